/// Group normalisation over NHWC (or any `[N, …, C]`) tensors, alone or fused with SiLU.
///
/// Statistics are per sample and group, over every non-batch position and the C/groups
/// channels of the group. The fused kernels work on (sample, run of whole groups) units:
/// every row (position) of a unit is a contiguous run of channels, so the passes stream
/// through memory in 32/16-channel blocks and keep per-channel sums, which are added per
/// group in channel order. Units depend on the shape only, so results do not depend on
/// the thread count.

/// y = (x − mean)/√(var + eps)·weight + bias, statistics per sample and group of channels.
/// `x` is `[N, …, C]` with C divisible by `groups`; weight and bias are `[C]` or nil.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    groupNormOp(NoActivation(), "group_norm", x, groups: groups, weight: weight, bias: bias, eps: eps)
}

/// silu(groupNorm(x)), in one fused pass forward and one fused backward.
public func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    groupNormOp(SiLUActivation(), "group_norm_silu", x, groups: groups, weight: weight, bias: bias, eps: eps)
}

/// How a group-norm input splits into work units.
struct GroupNormLayout {
    let samples: Int
    /// Non-batch positions per sample (H·W for NHWC).
    let positions: Int
    let channels: Int
    let groups: Int
    let groupWidth: Int
    /// Units per sample: at least 8 units in all, so threads balance when N is small.
    let blocksPerSample: Int

    init(shape: [Int], groups: Int) {
        precondition(shape.count >= 2, "groupNorm: input must be [N, …, C], got \(shape)")
        samples = shape[0]
        channels = shape[shape.count - 1]
        positions = shape.dropFirst().dropLast().reduce(1, *)
        precondition(groups > 0 && channels % groups == 0, "groupNorm: \(channels) channels do not split into \(groups) groups")
        self.groups = groups
        groupWidth = channels / groups
        blocksPerSample = (1...groups).first { groups % $0 == 0 && shape[0] * $0 >= 8 } ?? groups
    }

    var units: Int { samples * blocksPerSample }
    var blockWidth: Int { channels / blocksPerSample }
    var groupsPerBlock: Int { groups / blocksPerSample }
    /// Elements a statistic is taken over.
    var groupSize: Int { positions * groupWidth }
    /// Units per thread chunk, so that a chunk has some 32 Ki elements of work.
    var grain: Int { max(1, 32768 / max(1, positions * blockWidth)) }
}

func groupNormOp<A: NormActivation>(_ act: A, _ name: String, _ x: Tensor, groups: Int,
                                    weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
    let layout = GroupNormLayout(shape: x.shape, groups: groups)
    checkAffine(weight, channels: layout.channels, "weight", name)
    checkAffine(bias, channels: layout.channels, "bias", name)
    let out = Tensor(uninitialized: x.shape)
    // Per (sample, group) mean and 1/std, saved for the fused backward.
    let stats = Tensor(uninitialized: [2, layout.samples * layout.groups])
    groupNormForward(act, layout, x: x.data, y: out.data, weight: weight?.data, bias: bias?.data,
                     mean: stats.data, rstd: stats.data + layout.samples * layout.groups, eps: eps)
    let affine = AffineInputs(x, weight, bias)
    return out.recorded(name, affine.inputs) { g, needs in
        let needW = affine.needW(needs), needB = affine.needB(needs)
        if GradMode.isEnabled {
            let (dx, dw, db) = groupNormCompositeBackward(act, layout, g, x, weight, bias, eps: eps,
                                                          needX: needs[0], needW: needW, needB: needB)
            return affine.gradients(dx: dx, dw: dw, db: db)
        }
        let (dx, dw, db) = groupNormBackward(act, layout, g: g, x: x, weight: weight, bias: bias, stats: stats,
                                             needX: needs[0], needW: needW, needB: needB)
        return affine.gradients(dx: dx, dw: dw, db: db)
    }
}

// MARK: - Forward

/// Two passes per unit (see `NormKernels`): shifted per-channel moments → group mean and
/// 1/std; then normalise, affine and activation (the unit's rows are in L2 by then).
func groupNormForward<A: NormActivation>(_ act: A, _ L: GroupNormLayout, x: UnsafeMutablePointer<Float>,
                                         y: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>?,
                                         bias: UnsafeMutablePointer<Float>?, mean: UnsafeMutablePointer<Float>,
                                         rstd: UnsafeMutablePointer<Float>, eps: Float) {
    let W = L.blockWidth, C = L.channels, P = L.positions, cg = L.groupWidth
    let scratchTensor = Tensor(uninitialized: [L.units, 5 * W])
    let scratch = scratchTensor.data
    Parallel.forRange(L.units, grain: L.grain) { range in
        for u in range {
            let sample = u / L.blocksPerSample, c0 = (u % L.blocksPerSample) * W
            let xs = x + sample * P * C + c0, ys = y + sample * P * C + c0
            let g0 = sample * L.groups + c0 / cg
            let sum = scratch + u * 5 * W, squares = sum + W, cmean = squares + W
            let cscale = cmean + W, cshift = cscale + W

            // Shifted by the sample's first row (position 0).
            forEachLaneBlock(width: W, ShiftedMomentsKernel(x: xs, rows: P, stride: C, shift: xs, sum: sum,
                                                            squares: squares))
            for j in 0..<L.groupsPerBlock {
                let cs = j * cg
                let (m, variance) = shiftedMoments(shift: xs + cs, sum: sum + cs, squares: squares + cs,
                                                   channels: cg, count: P)
                let rs = Float(1 / (variance + Double(eps)).squareRoot())
                mean[g0 + j] = Float(m)
                rstd[g0 + j] = rs
                for c in cs..<cs + cg {
                    cmean[c] = Float(m)
                    cscale[c] = rs * (weight?[c0 + c] ?? 1)
                    cshift[c] = bias?[c0 + c] ?? 0
                }
            }
            forEachLaneBlock(width: W, NormalizeKernel(act: act, x: xs, y: ys, rows: P, stride: C, mean: cmean,
                                                          scale: cscale, shift: cshift))
        }
    }
}

// MARK: - Backward

/// Fused first-order backward. Pass A: dz = act'(z)·g (kept in dx's buffer for the next
/// pass) and per-channel Σdz, Σdz·x̂, which are db, dw and (weighted by w) the group
/// means that dx needs. Pass B: dx = 1/std·(w·dz − mean(w·dz) − x̂·mean(w·dz·x̂)).
func groupNormBackward<A: NormActivation>(_ act: A, _ L: GroupNormLayout, g: Tensor, x: Tensor, weight: Tensor?,
                                          bias: Tensor?, stats: Tensor, needX: Bool, needW: Bool,
                                          needB: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let W = L.blockWidth, C = L.channels, P = L.positions, cg = L.groupWidth
    let dxTensor = needX ? Tensor(uninitialized: x.shape) : nil
    // Per-sample Σdz (db) and Σdz·x̂ (dw), added over samples in order at the end.
    let parts = Tensor(uninitialized: [2, L.samples, C])
    let scratchTensor = Tensor(uninitialized: [L.units, 7 * W])
    let px = x.data, pg = g.data, pdx = dxTensor?.data, pw = weight?.data, pb = bias?.data
    let dbPart = parts.data, dwPart = parts.data + L.samples * C
    let mean = stats.data, rstd = stats.data + L.samples * L.groups
    let scratch = scratchTensor.data
    let inverseCount = 1 / Double(L.groupSize)
    Parallel.forRange(L.units, grain: L.grain) { range in
        for u in range {
            let sample = u / L.blocksPerSample, c0 = (u % L.blocksPerSample) * W
            let offset = sample * P * C + c0
            let xs = px + offset, gs = pg + offset, dxs = pdx.map { $0 + offset }
            let g0 = sample * L.groups + c0 / cg
            let cmean = scratch + u * 7 * W, crs = cmean + W, cscale = crs + W, cshift = cscale + W
            let coefA = cshift + W, coefB = coefA + W, coefC = coefB + W
            let sumDz = dbPart + sample * C + c0, sumDzXhat = dwPart + sample * C + c0
            for j in 0..<L.groupsPerBlock {
                let m = mean[g0 + j], rs = rstd[g0 + j]
                for c in j * cg..<(j + 1) * cg {
                    cmean[c] = m
                    crs[c] = rs
                    cscale[c] = rs * (pw?[c0 + c] ?? 1)  // as in the forward, so z is bit-identical
                    cshift[c] = pb?[c0 + c] ?? 0
                }
            }
            forEachLaneBlock(width: W, GradientSumsKernel(
                act: act, x: xs, g: gs, dzOut: A.isIdentity ? nil : dxs, rows: P, stride: C, mean: cmean, rstd: crs,
                scale: cscale, shift: cshift, sumDz: sumDz, sumDzXhat: sumDzXhat))
            guard let dxs else { continue }
            for j in 0..<L.groupsPerBlock {
                var a = 0.0, b = 0.0
                for c in j * cg..<(j + 1) * cg {
                    let w = Double(pw?[c0 + c] ?? 1)
                    a += w * Double(sumDz[c])
                    b += w * Double(sumDzXhat[c])
                }
                let rs = rstd[g0 + j]
                for c in j * cg..<(j + 1) * cg {
                    coefA[c] = rs * (pw?[c0 + c] ?? 1)
                    coefB[c] = Float(Double(rs) * Double(rs) * b * inverseCount)
                    coefC[c] = Float(Double(rs) * a * inverseCount)
                }
            }
            forEachLaneBlock(width: W, InputGradientKernel(
                dz: A.isIdentity ? gs : dxs, x: xs, dx: dxs, rows: P, stride: C, mean: cmean,
                a: coefA, b: coefB, k: coefC))
        }
    }
    let dw = needW ? sumOverParts(dwPart, parts: L.samples, channels: C) : nil
    let db = needB ? sumOverParts(dbPart, parts: L.samples, channels: C) : nil
    return (dxTensor, dw, db)
}

/// The same gradients from differentiable ops (when building a graph: WGAN-GP, R1).
func groupNormCompositeBackward<A: NormActivation>(_ act: A, _ L: GroupNormLayout, _ g: Tensor, _ x: Tensor,
                                                   _ weight: Tensor?, _ bias: Tensor?, eps: Float, needX: Bool,
                                                   needW: Bool, needB: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let view = [L.samples, L.positions, L.groups, L.groupWidth]
    let statShape = [L.samples, 1, L.groups, 1], affineShape = [1, 1, L.groups, L.groupWidth]
    let (xhat, std) = NormComposite.normalize(x.reshaped(view), statShape: statShape, eps: eps)
    let w = weight?.reshaped([L.groups, L.groupWidth]), b = bias?.reshaped([L.groups, L.groupWidth])
    var gz = g.reshaped(view)
    if !A.isIdentity {
        var z = w.map { xhat * $0 } ?? xhat
        if let b { z = z + b }
        gz = act.gradient(gz, z)
    }
    let (dx, dw, db) = NormComposite.backward(gz: gz, xhat: xhat, std: std, weight: w, statShape: statShape,
                                              affineShape: affineShape, throughStatistics: true,
                                              needX: needX, needW: needW, needB: needB)
    return (dx, dw, db)  // AffineInputs puts each back into its input's shape
}
