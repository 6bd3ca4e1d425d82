/// Group normalisation over NHWC (or any `[N, …, C]`) tensors, alone or fused with SiLU.
///
/// Statistics are per sample and group, over every non-batch position and the C/groups
/// channels of the group. The fused kernels work on (sample, run of whole groups) units:
/// every row of a unit is a contiguous run of channels, so the passes stream through
/// memory with 16-lane vectors across channels and keep per-channel sums, which are
/// added per group in channel order. Units depend on the shape only, so results do not
/// depend on the thread count.

/// y = (x − mean)/√(var + eps)·weight + bias, statistics per sample and group of channels.
/// `x` is `[N, …, C]` with C divisible by `groups`; weight and bias are `[C]` or nil.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    groupNormOp(NoActivation.self, "group_norm", x, groups: groups, weight: weight, bias: bias, eps: eps)
}

/// silu(groupNorm(x)), in one fused pass forward and one fused backward.
public func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    groupNormOp(SiLUActivation.self, "group_norm_silu", x, groups: groups, weight: weight, bias: bias, eps: eps)
}

/// How a group-norm input splits into work units.
struct GroupNormLayout {
    let samples: Int
    /// Non-batch positions per sample (H·W for NHWC).
    let positions: Int
    let channels: Int
    let groups: Int
    let groupWidth: Int
    /// Units per sample: enough for two threads' worth of load balancing when N is small.
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

func groupNormOp<A: NormActivation>(_ act: A.Type, _ name: String, _ x: Tensor, groups: Int,
                                    weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
    let layout = GroupNormLayout(shape: x.shape, groups: groups)
    checkAffine(weight, channels: layout.channels, "weight", name)
    checkAffine(bias, channels: layout.channels, "bias", name)
    let out = Tensor(uninitialized: x.shape)
    // Per (sample, group) mean and 1/std, saved for the fused backward.
    let stats = Tensor(uninitialized: [2, layout.samples * layout.groups])
    groupNormForward(A.self, layout, x: x.data, y: out.data, weight: weight?.data, bias: bias?.data,
                     mean: stats.data, rstd: stats.data + layout.samples * layout.groups, eps: eps)
    let affine = AffineInputs(x, weight, bias)
    return out.recorded(name, affine.inputs) { g, needs in
        let needW = affine.needW(needs), needB = affine.needB(needs)
        if GradMode.isEnabled {
            let (dx, dw, db) = groupNormCompositeBackward(A.self, layout, g, x, weight, bias, eps: eps,
                                                          needX: needs[0], needW: needW, needB: needB)
            return affine.gradients(dx: dx, dw: dw, db: db)
        }
        let (dx, dw, db) = groupNormBackward(A.self, layout, g: g, x: x, weight: weight, bias: bias, stats: stats,
                                             needX: needs[0], needW: needW, needB: needB)
        return affine.gradients(dx: dx, dw: dw, db: db)
    }
}

// MARK: - Forward

/// Three passes per unit: per-channel sums → group means; sums of squared deviations →
/// group 1/std (two-pass variance: no cancellation when |mean| ≫ std); normalise, affine
/// and activation. A unit's rows stay in L2 between passes.
func groupNormForward<A: NormActivation>(_: A.Type, _ L: GroupNormLayout, x: UnsafeMutablePointer<Float>,
                                         y: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>?,
                                         bias: UnsafeMutablePointer<Float>?, mean: UnsafeMutablePointer<Float>,
                                         rstd: UnsafeMutablePointer<Float>, eps: Float) {
    let W = L.blockWidth, C = L.channels, P = L.positions, cg = L.groupWidth
    let scratchTensor = Tensor(uninitialized: [L.units, 5 * W])
    let scratch = scratchTensor.data
    let count = Double(L.groupSize)
    Parallel.forRange(L.units, grain: L.grain) { range in
        for u in range {
            let sample = u / L.blocksPerSample, c0 = (u % L.blocksPerSample) * W
            let xs = x + sample * P * C + c0, ys = y + sample * P * C + c0
            let g0 = sample * L.groups + c0 / cg
            let partial = scratch + u * 5 * W, total = partial + W, cmean = total + W
            let cscale = cmean + W, cshift = cscale + W

            sumColumns(rows: P, width: W, total: total, partial: partial) { r, c, n in loadLanes(xs + r * C + c, n) }
            for j in 0..<L.groupsPerBlock {
                let m = Float(sumStrided(total + j * cg, count: cg, stride: 1) / count)
                mean[g0 + j] = m
                (cmean + j * cg).update(repeating: m, count: cg)
            }
            sumColumns(rows: P, width: W, total: total, partial: partial) { r, c, n in
                let d = loadLanes(xs + r * C + c, n) - loadLanes(cmean + c, n)
                return d * d
            }
            for j in 0..<L.groupsPerBlock {
                let variance = sumStrided(total + j * cg, count: cg, stride: 1) / count
                let rs = Float(1 / (variance + Double(eps)).squareRoot())
                rstd[g0 + j] = rs
                for c in j * cg..<(j + 1) * cg {
                    cscale[c] = rs * (weight?[c0 + c] ?? 1)
                    cshift[c] = bias?[c0 + c] ?? 0
                }
            }
            for r in 0..<P {
                let xr = xs + r * C, yr = ys + r * C
                var c = 0
                while c < W {
                    let n = min(16, W - c)
                    let z = (loadLanes(xr + c, n) - loadLanes(cmean + c, n)) * loadLanes(cscale + c, n) + loadLanes(cshift + c, n)
                    storeLanes(A.apply(z), yr + c, n)
                    c += 16
                }
            }
        }
    }
}

// MARK: - Backward

/// Fused first-order backward. Pass A: dz = act'(z)·g (kept in dx's buffer for the next
/// pass) and per-channel Σdz, Σdz·x̂, which are db, dw and (weighted by w) the group
/// means that dx needs. Pass B: dx = 1/std·(w·dz − mean(w·dz) − x̂·mean(w·dz·x̂)).
func groupNormBackward<A: NormActivation>(_: A.Type, _ L: GroupNormLayout, g: Tensor, x: Tensor, weight: Tensor?,
                                          bias: Tensor?, stats: Tensor, needX: Bool, needW: Bool,
                                          needB: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let W = L.blockWidth, C = L.channels, P = L.positions, cg = L.groupWidth
    let dxTensor = needX ? Tensor(uninitialized: x.shape) : nil
    // Per-sample Σdz (db) and Σdz·x̂ (dw), added over samples in order at the end.
    let parts = Tensor(uninitialized: [2, L.samples, C])
    let scratchTensor = Tensor(uninitialized: [L.units, 9 * W])
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
            let partial = scratch + u * 9 * W, partial2 = partial + W, cmean = partial2 + W
            let crs = cmean + W, cscale = crs + W, cshift = cscale + W
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
            let keepDz = !A.isIdentity && dxs != nil
            sumColumnsPair(rows: P, width: W, total: sumDz, total2: sumDzXhat, partial: partial, partial2: partial2) { r, c, n in
                let o = r * C + c
                let centred = loadLanes(xs + o, n) - loadLanes(cmean + c, n)
                let xhat = centred * loadLanes(crs + c, n)
                var dz = loadLanes(gs + o, n)
                if !A.isIdentity {
                    dz = A.gradient(dz, centred * loadLanes(cscale + c, n) + loadLanes(cshift + c, n))
                    if keepDz { storeLanes(dz, dxs! + o, n) }
                }
                return (dz, dz * xhat)
            }
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
            let dzs = A.isIdentity ? gs : dxs
            for r in 0..<P {
                let o = r * C
                var c = 0
                while c < W {
                    let n = min(16, W - c)
                    let centred = loadLanes(xs + o + c, n) - loadLanes(cmean + c, n)
                    let dx = loadLanes(coefA + c, n) * loadLanes(dzs + o + c, n)
                        - loadLanes(coefB + c, n) * centred - loadLanes(coefC + c, n)
                    storeLanes(dx, dxs + o + c, n)
                    c += 16
                }
            }
        }
    }
    let dw = needW ? sumOverSamples(dwPart, samples: L.samples, channels: C) : nil
    let db = needB ? sumOverSamples(dbPart, samples: L.samples, channels: C) : nil
    return (dxTensor, dw, db)
}

/// [C] = Σ over the leading axis of a [samples, C] buffer, in sample order, in double.
func sumOverSamples(_ p: UnsafeMutablePointer<Float>, samples: Int, channels: Int) -> Tensor {
    let out = Tensor(uninitialized: [channels])
    for c in 0..<channels { out.data[c] = Float(sumStrided(p + c, count: samples, stride: channels)) }
    return out
}

/// The same gradients from differentiable ops (when building a graph: WGAN-GP, R1).
func groupNormCompositeBackward<A: NormActivation>(_: A.Type, _ L: GroupNormLayout, _ g: Tensor, _ x: Tensor,
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
        gz = A.gradient(gz, z)
    }
    let (dx, dw, db) = NormComposite.backward(gz: gz, xhat: xhat, std: std, weight: w, statShape: statShape,
                                              affineShape: affineShape, throughStatistics: true,
                                              needX: needX, needW: needW, needB: needB)
    return (dx, dw, db)  // AffineInputs puts each back into its input's shape
}
