/// Layer normalisation over the last axis (transformer blocks, DiT).
///
/// Each row is short enough to stay in L1, so the forward takes two passes over it for
/// the statistics (mean, then squared deviations) and one to write. The backward's
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
    Parallel.forRange(R, grain: max(1, 16384 / D)) { range in
        for r in range {
            let xr = x + r * D, yr = y + r * D
            let m = sumRow(D) { i, n in loadLanes(xr + i, n) } / Float(D)
            let variance = sumRow(D) { i, n in
                let d = loadLanes(xr + i, n) - m
                return d * d
            } / Float(D)
            let rs = Float(1 / (Double(variance) + Double(eps)).squareRoot())
            mean[r] = m
            rstd[r] = rs
            var i = 0
            while i < D {
                let n = min(16, D - i)
                var v = (loadLanes(xr + i, n) - m) * rs
                if let weight { v = v * loadLanes(weight + i, n) }
                if let bias { v = v + loadLanes(bias + i, n) }
                storeLanes(v, yr + i, n)
                i += 16
            }
        }
    }
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
    let px = x.data, pg = g.data, pdx = dxTensor?.data, pw = weight?.data
    let mean = stats.data, rstd = stats.data + R
    let dbPart = parts?.data, dwPart = parts.map { $0.data + blocks * D }
    let inverseD = 1 / Float(D)
    Parallel.forRange(blocks, grain: 1) { range in
        for blk in range {
            let dwp = dwPart.map { $0 + blk * D }, dbp = dbPart.map { $0 + blk * D }
            dwp?.update(repeating: 0, count: D)
            dbp?.update(repeating: 0, count: D)
            for r in blk * rowsPerBlock..<min(R, (blk + 1) * rowsPerBlock) {
                let xr = px + r * D, gr = pg + r * D
                let m = mean[r], rs = rstd[r]
                var a: Float = 0, b: Float = 0
                if needX {
                    var accA = Float16x(repeating: 0), accB = Float16x(repeating: 0)
                    var i = 0
                    while i < D {
                        let n = min(16, D - i)
                        var dxhat = loadLanes(gr + i, n)
                        if let pw { dxhat = dxhat * loadLanes(pw + i, n) }
                        accA += dxhat  // padded lanes are zero: g was loaded as zero there
                        accB += dxhat * (loadLanes(xr + i, n) - m) * rs
                        i += 16
                    }
                    a = accA.sum() * inverseD
                    b = accB.sum() * inverseD
                }
                var i = 0
                while i < D {
                    let n = min(16, D - i)
                    let gv = loadLanes(gr + i, n)
                    let xhat = (loadLanes(xr + i, n) - m) * rs
                    if let pdx {
                        let dxhat = pw.map { gv * loadLanes($0 + i, n) } ?? gv
                        storeLanes((dxhat - a - xhat * b) * rs, pdx + r * D + i, n)
                    }
                    if let dwp, let dbp {
                        storeLanes(loadLanes(dwp + i, n) + gv * xhat, dwp + i, n)
                        storeLanes(loadLanes(dbp + i, n) + gv, dbp + i, n)
                    }
                    i += 16
                }
            }
        }
    }
    let dw = needW ? sumOverParts(dwPart!, parts: blocks, channels: D) : nil
    let db = needB ? sumOverParts(dbPart!, parts: blocks, channels: D) : nil
    return (dxTensor, dw, db)
}
