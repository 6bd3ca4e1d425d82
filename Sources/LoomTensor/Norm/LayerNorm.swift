/// Layer normalisation over the last axis (transformer blocks, DiT).
///
/// Each row is short enough to stay in L1: the forward takes one pass over it for shifted
/// moments (mean and variance) and one to write. The backward's
/// weight and bias gradients are column sums over rows: each fixed block of rows (set by
/// the shape, not the thread count) writes its own partial sums, added in block order.

/// y = (x − mean)/√(var + eps)·weight + bias with statistics over the last axis;
/// weight and bias are `[D]` (D = last extent) or nil.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    precondition(x.rank >= 1 && x.shape[x.rank - 1] > 0, "layerNorm: input needs a non-empty last axis, got \(x.shape)")
    let D = x.shape[x.rank - 1], R = x.count / D
    checkAffine(weight, channels: D, "weight", "layerNorm")
    checkAffine(bias, channels: D, "bias", "layerNorm")
    let out = Tensor(uninitialized: x.shape)
    let stats = Tensor(uninitialized: [2, R])  // per-row mean and 1/std for the fused backward
    layerNormForward(x: x.data, y: out.data, weight: weight?.data, bias: bias?.data, mean: stats.data,
                     rstd: stats.data + R, rows: R, width: D, eps: eps)
    let affine = AffineInputs(x, weight, bias)
    return out.recorded("layer_norm", affine.inputs) { g, needs in
        let needW = affine.needW(needs), needB = affine.needB(needs)
        if GradMode.isEnabled {
            let (xhat, std) = NormComposite.normalize(x.reshaped([R, D]), statShape: [R, 1], eps: eps)
            let (dx, dw, db) = NormComposite.backward(
                gz: g.reshaped([R, D]), xhat: xhat, std: std, weight: weight?.reshaped([D]), statShape: [R, 1],
                affineShape: [1, D], throughStatistics: true, needX: needs[0], needW: needW, needB: needB)
            return affine.gradients(dx: dx, dw: dw, db: db)
        }
        let (dx, dw, db) = layerNormBackward(g: g, x: x, weight: weight, stats: stats, rows: R, width: D,
                                             needX: needs[0], needW: needW, needB: needB)
        return affine.gradients(dx: dx, dw: dw, db: db)
    }
}

func layerNormForward(x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>,
                      weight: UnsafeMutablePointer<Float>?, bias: UnsafeMutablePointer<Float>?,
                      mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                      rows R: Int, width D: Int, eps: Float) {
    // Missing weight and bias as ones and zeros, so the row loops have no branches.
    let affine = weight == nil || bias == nil ? Tensor(uninitialized: [2, D]) : nil
    let scale = weight ?? affine!.data, shift = bias ?? affine!.data + D
    if weight == nil { scale.update(repeating: 1, count: D) }
    if bias == nil { shift.update(repeating: 0, count: D) }
    Parallel.forRange(R, grain: max(1, 16384 / D)) { range in
        for r in range {
            let xr = x + r * D, yr = y + r * D
            // One pass of moments shifted by the row's first value (see `shiftedMoments`);
            // explicit loops, since closures here were not inlined.
            let k = xr[0]
            var s1 = Float16x(repeating: 0), s2 = Float16x(repeating: 0)
            var i = 0
            while i + 16 <= D {
                let d = loadLanes(xr + i, 16) - k
                s1 += d
                s2 += d * d
                i += 16
            }
            var t1: Float = 0, t2: Float = 0
            for j in i..<D {
                t1 += xr[j] - k
                t2 += (xr[j] - k) * (xr[j] - k)
            }
            let offset = Double(laneSum(s1) + t1) / Double(D)  // mean − k
            let m = Float(Double(k) + offset)
            let variance = max(0, Double(laneSum(s2) + t2) / Double(D) - offset * offset)
            let rs = Float(1 / (variance + Double(eps)).squareRoot())
            mean[r] = m
            rstd[r] = rs
            i = 0
            while i + 16 <= D {
                let xhat: Float16x = (loadLanes(xr + i, 16) - m) * rs
                storeLanes(xhat * loadLanes(scale + i, 16) + loadLanes(shift + i, 16), yr + i, 16)
                i += 16
            }
            for j in i..<D { yr[j] = (xr[j] - m) * rs * scale[j] + shift[j] }
        }
    }
    withExtendedLifetime(affine) {}
}

/// Fused first-order backward: per row, Σ w·g and Σ w·g·x̂ (16-lane accumulators), then
/// dx = 1/std·(w·g − mean(w·g) − x̂·mean(w·g·x̂)); dw = Σ g·x̂ and db = Σ g over rows.
func layerNormBackward(g: Tensor, x: Tensor, weight: Tensor?, stats: Tensor, rows R: Int, width D: Int,
                       needX: Bool, needW: Bool, needB: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let rowsPerBlock = min(256, max(1, 16384 / D))
    let blocks = (R + rowsPerBlock - 1) / rowsPerBlock
    let needAffine = needW || needB
    let dxTensor = needX ? Tensor(uninitialized: x.shape) : nil
    let parts = needAffine ? Tensor(uninitialized: [2, blocks, D]) : nil
    let px = x.data, pg = g.data, pdx = dxTensor?.data
    let ones = weight == nil ? Tensor(repeating: 1, shape: [D]) : nil
    let pw = weight?.data ?? ones!.data  // no branches on a missing weight in the loops
    let mean = stats.data, rstd = stats.data + R
    let dbPart = parts?.data, dwPart = parts.map { $0.data + blocks * D }
    Parallel.forRange(blocks, grain: 1) { range in
        for blk in range {
            let dwp = dwPart.map { $0 + blk * D }, dbp = dbPart.map { $0 + blk * D }
            dwp?.update(repeating: 0, count: D)
            dbp?.update(repeating: 0, count: D)
            for r in blk * rowsPerBlock..<min(R, (blk + 1) * rowsPerBlock) {
                let xr = px + r * D, gr = pg + r * D
                if let pdx { layerNormInputGradientRow(x: xr, g: gr, weight: pw, mean: mean[r], rstd: rstd[r], dx: pdx + r * D, width: D) }
                if let dwp, let dbp { layerNormAffineGradientRow(x: xr, g: gr, mean: mean[r], rstd: rstd[r], dw: dwp, db: dbp, width: D) }
            }
        }
    }
    withExtendedLifetime(ones) {}
    let dw = needW ? sumOverParts(dwPart!, parts: blocks, channels: D) : nil
    let db = needB ? sumOverParts(dbPart!, parts: blocks, channels: D) : nil
    return (dxTensor, dw, db)
}

/// One row's dx = 1/std·(w·g − mean(w·g) − x̂·mean(w·g·x̂)), the means over 16 lanes.
@inline(__always)
func layerNormInputGradientRow(x xr: UnsafeMutablePointer<Float>, g gr: UnsafeMutablePointer<Float>,
                               weight pw: UnsafeMutablePointer<Float>, mean m: Float, rstd rs: Float,
                               dx dxr: UnsafeMutablePointer<Float>, width D: Int) {
    var accA = Float16x(repeating: 0), accB = Float16x(repeating: 0)
    var i = 0
    while i + 16 <= D {
        let dxhat = loadLanes(gr + i, 16) * loadLanes(pw + i, 16)
        let xhat = (loadLanes(xr + i, 16) - m) * rs
        accA += dxhat
        accB += dxhat * xhat
        i += 16
    }
    var tailA: Float = 0, tailB: Float = 0
    for j in i..<D {
        tailA += gr[j] * pw[j]
        tailB += gr[j] * pw[j] * ((xr[j] - m) * rs)
    }
    let inverseD = 1 / Float(D)
    let a = (laneSum(accA) + tailA) * inverseD, b = (laneSum(accB) + tailB) * inverseD
    i = 0
    while i + 16 <= D {
        let xhat = (loadLanes(xr + i, 16) - m) * rs
        let dxhat = loadLanes(gr + i, 16) * loadLanes(pw + i, 16)
        storeLanes((dxhat - a - xhat * b) * rs, dxr + i, 16)
        i += 16
    }
    for j in i..<D { dxr[j] = (gr[j] * pw[j] - a - (xr[j] - m) * rs * b) * rs }
}

/// Adds one row's share of the affine gradients: dw += g·x̂, db += g.
@inline(__always)
func layerNormAffineGradientRow(x xr: UnsafeMutablePointer<Float>, g gr: UnsafeMutablePointer<Float>,
                                mean m: Float, rstd rs: Float, dw dwp: UnsafeMutablePointer<Float>,
                                db dbp: UnsafeMutablePointer<Float>, width D: Int) {
    var i = 0
    while i + 16 <= D {
        let gv = loadLanes(gr + i, 16)
        let xhat = (loadLanes(xr + i, 16) - m) * rs
        storeLanes(loadLanes(dwp + i, 16) + gv * xhat, dwp + i, 16)
        storeLanes(loadLanes(dbp + i, 16) + gv, dbp + i, 16)
        i += 16
    }
    for j in i..<D {
        dwp[j] += gr[j] * ((xr[j] - m) * rs)
        dbp[j] += gr[j]
    }
}
