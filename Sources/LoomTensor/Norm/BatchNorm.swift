/// Batch normalisation over all axes but the last (channels), split into a statistics
/// step and a normalisation step so that synchronised batch norm can all-reduce the
/// statistics in between:
///
///     var (sum, squares, count) = batchNormStatistics(x)
///     try reducer.sumAcrossReplicas(&sum); try reducer.sumAcrossReplicas(&squares)
///     let total = count * replicas
///     let y = batchNorm(x, …, training: true,
///                       statistics: batchNormMoments(sum: sum, sumOfSquares: squares, count: total),
///                       statisticsCount: total)
///
/// Per-channel sums run over fixed blocks of rows (set by the shape, not the thread count),
/// each summed in float and then added in block order in double.

/// Per-channel Σx and Σx² (in double) over every axis but the last, and the number of
/// values per channel: the quantities synchronised batch norm all-reduces. (Unshifted, so
/// that they add across replicas; the variance made from them keeps about 7 − log10(mean²/var)
/// digits, while unsynchronised training uses shifted moments.)
public func batchNormStatistics(_ x: Tensor) -> (sum: [Double], sumOfSquares: [Double], count: Int) {
    let L = BatchNormLayout(shape: x.shape)
    let C = L.channels
    let parts = Tensor(uninitialized: [2, L.blocks, C])
    let p = parts.data, p2 = parts.data + L.blocks * C
    L.forEachBlock { blk, rows in
        forEachLaneBlock(width: C, SumAndSquaresKernel(x: x.data + rows.lowerBound * C, rows: rows.count, stride: C,
                                                       sum: p + blk * C, squares: p2 + blk * C))
    }
    let (sum, squares) = (L.totals(p), L.totals(p2))
    return (sum, squares, L.rows)
}

/// Mean and biased variance per channel from (all-reduced) sums, as `batchNorm`'s
/// `statistics` argument.
public func batchNormMoments(sum: [Double], sumOfSquares: [Double], count: Int) -> (mean: Tensor, variance: Tensor) {
    precondition(sum.count == sumOfSquares.count && count > 0, "batchNormMoments: mismatched sums or empty count")
    let mean = Tensor(uninitialized: [sum.count]), variance = Tensor(uninitialized: [sum.count])
    for c in 0..<sum.count {
        let m = sum[c] / Double(count)
        mean.data[c] = Float(m)
        variance.data[c] = Float(max(0, sumOfSquares[c] / Double(count) - m * m))
    }
    return (mean, variance)
}

/// Batch norm of `x` (`[…, C]`) with PyTorch's semantics. Training: normalise with the batch
/// mean and biased variance, and update `runningMean`/`runningVar` in place off the tape
/// (running = (1 − momentum)·running + momentum·batch, the variance unbiased); gradients
/// flow through the batch statistics. Eval: normalise with the running statistics.
///
/// `statistics` (training only) replaces the batch's own mean and biased variance, e.g.
/// all-reduced ones for synchronised batch norm; `statisticsCount` is the number of values
/// behind them (for the unbiased running variance; default: this batch's). With
/// `synchronizedBackward` (the replicas' reducer) the gradient is synchronised batch norm's,
/// as PyTorch's SyncBatchNorm computes it: Σg and Σg·x̂ per channel are summed over the
/// replicas and dx = w/σ·(g − Σg/N − x̂·Σg·x̂/N) with N = `statisticsCount`, so each rank
/// gets its rows of the whole batch's dx (first order only: nothing is recorded through the
/// sums). Without it, the supplied statistics are treated as this rank's own (exact with
/// one rank). The weight and bias gradients are this rank's sums; the supplied tensors get
/// no gradient.
public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor, runningVar: Tensor,
                      training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                      statistics: (mean: Tensor, variance: Tensor)? = nil, statisticsCount: Int? = nil,
                      synchronizedBackward: ReplicaReducer? = nil) -> Tensor {
    let L = BatchNormLayout(shape: x.shape)
    let C = L.channels
    for (t, what) in [(weight, "weight"), (bias, "bias"), (runningMean, "runningMean"), (runningVar, "runningVar"),
                      (statistics?.mean, "statistics.mean"), (statistics?.variance, "statistics.variance")] {
        checkAffine(t, channels: C, what, "batchNorm")
    }
    // Per-channel mean, 1/std and std used by this call (a copy: running stats change in place).
    let stats = Tensor(uninitialized: [3, C])
    let mean = stats.data, rstd = stats.data + C, std = stats.data + 2 * C
    if training {
        let n = statisticsCount ?? L.rows
        precondition(n > 1, "batchNorm: training needs more than one value per channel, got \(n)")
        var variance = [Double](repeating: 0, count: C)
        if let statistics {
            for c in 0..<C {
                mean[c] = statistics.mean.data[c]
                variance[c] = Double(statistics.variance.data[c])
            }
        } else {
            // One pass of moments shifted by the first row (see `shiftedMoments`).
            let parts = Tensor(uninitialized: [2, L.blocks, C])
            let p = parts.data, p2 = parts.data + L.blocks * C, px = x.data
            L.forEachBlock { blk, rows in
                forEachLaneBlock(width: C, ShiftedMomentsKernel(x: px + rows.lowerBound * C, rows: rows.count, stride: C,
                                                                shift: px, sum: p + blk * C, squares: p2 + blk * C))
            }
            let (sums, squares) = (L.totals(p), L.totals(p2))
            for c in 0..<C {
                let d = sums[c] / Double(L.rows)
                mean[c] = Float(Double(px[c]) + d)
                variance[c] = max(0, squares[c] / Double(L.rows) - d * d)
            }
        }
        let m = Double(momentum), unbias = Double(n) / Double(n - 1)
        for c in 0..<C {
            runningMean.data[c] = Float((1 - m) * Double(runningMean.data[c]) + m * Double(mean[c]))
            runningVar.data[c] = Float((1 - m) * Double(runningVar.data[c]) + m * variance[c] * unbias)
            std[c] = Float((variance[c] + Double(eps)).squareRoot())
            rstd[c] = Float(1 / (variance[c] + Double(eps)).squareRoot())
        }
    } else {
        for c in 0..<C {
            mean[c] = runningMean.data[c]
            std[c] = Float((Double(runningVar.data[c]) + Double(eps)).squareRoot())
            rstd[c] = Float(1 / (Double(runningVar.data[c]) + Double(eps)).squareRoot())
        }
    }
    let out = Tensor(uninitialized: x.shape)
    batchNormForward(L, x: x.data, y: out.data, mean: mean, rstd: rstd, weight: weight?.data, bias: bias?.data)
    let affine = AffineInputs(x, weight, bias)
    return out.recorded(training ? "batch_norm_train" : "batch_norm_eval", affine.inputs) { g, needs in
        let needW = affine.needW(needs), needB = affine.needB(needs)
        if training, statistics != nil, let reducer = synchronizedBackward {
            let (dx, dw, db) = noGrad {
                synchronizedBatchNormBackward(L, g: g, x: x, weight: weight, stats: stats,
                                              count: statisticsCount ?? L.rows, reducer: reducer)
            }
            return affine.gradients(dx: needs[0] ? dx : nil, dw: needW ? dw : nil, db: needB ? db : nil)
        }
        if GradMode.isEnabled {
            let v = x.reshaped([L.rows, C])
            let xhat: Tensor, stdT: Tensor
            if training && statistics == nil {
                (xhat, stdT) = NormComposite.normalize(v, statShape: [1, C], eps: eps)
            } else {
                // Fixed statistics are constants of the graph.
                let meanT = Tensor(uninitialized: [C])
                meanT.data.update(from: stats.data, count: C)
                stdT = Tensor(uninitialized: [C])
                stdT.data.update(from: stats.data + 2 * C, count: C)
                xhat = (v - meanT) / stdT
            }
            let (dx, dw, db) = NormComposite.backward(
                gz: g.reshaped([L.rows, C]), xhat: xhat, std: stdT, weight: weight?.reshaped([C]), statShape: [1, C],
                affineShape: [1, C], throughStatistics: training, needX: needs[0], needW: needW, needB: needB)
            return affine.gradients(dx: dx?.reshaped(x.shape), dw: dw, db: db)
        }
        let (dx, dw, db) = batchNormBackward(L, g: g, x: x, weight: weight, stats: stats, throughStatistics: training,
                                             needX: needs[0], needW: needW, needB: needB)
        return affine.gradients(dx: dx, dw: dw, db: db)
    }
}

/// A `[rows, C]` view of a batch-norm input and its fixed row blocks.
struct BatchNormLayout {
    let rows: Int
    let channels: Int
    let rowsPerBlock: Int

    init(shape: [Int]) {
        precondition(shape.count >= 1 && shape[shape.count - 1] > 0, "batchNorm: input needs a channel axis, got \(shape)")
        channels = shape[shape.count - 1]
        rows = shape.dropLast().reduce(1, *)
        rowsPerBlock = max(16, 16384 / channels)
    }

    var blocks: Int { (rows + rowsPerBlock - 1) / rowsPerBlock }
    func rowRange(_ block: Int) -> Range<Int> { block * rowsPerBlock..<min(rows, (block + 1) * rowsPerBlock) }

    /// Runs `body(block, rows)` for every row block, blocks split across threads.
    @inline(__always)
    func forEachBlock(_ body: (_ block: Int, _ rows: Range<Int>) -> Void) {
        Parallel.forRange(blocks, grain: 1) { range in
            for blk in range { body(blk, rowRange(blk)) }
        }
    }

    /// Adds up per-block partial sums (a [blocks, C] buffer) in block order, in double.
    func totals(_ parts: UnsafeMutablePointer<Float>) -> [Double] {
        (0..<channels).map { sumStrided(parts + $0, count: blocks, stride: channels) }
    }
}

/// y = (x − mean)·(1/std·w) + b per channel.
func batchNormForward(_ L: BatchNormLayout, x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>,
                      mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                      weight: UnsafeMutablePointer<Float>?, bias: UnsafeMutablePointer<Float>?) {
    let C = L.channels
    let coefs = Tensor(uninitialized: [2, C])
    let scale = coefs.data, shift = coefs.data + C
    for c in 0..<C {
        scale[c] = rstd[c] * (weight?[c] ?? 1)
        shift[c] = bias?[c] ?? 0
    }
    L.forEachBlock { _, rows in
        let o = rows.lowerBound * C
        forEachLaneBlock(width: C, NormalizeKernel<NoActivation>(x: x + o, y: y + o, rows: rows.count, stride: C,
                                                                 mean: mean, scale: scale, shift: shift))
    }
}

/// Fused first-order backward: db = Σg, dw = Σg·x̂ per channel; in training
/// dx = w/std·(g − mean(g) − x̂·mean(g·x̂)), in eval (or with `throughStatistics` false)
/// dx = w/std·g.
func batchNormBackward(_ L: BatchNormLayout, g: Tensor, x: Tensor, weight: Tensor?, stats: Tensor,
                       throughStatistics: Bool, needX: Bool, needW: Bool, needB: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let C = L.channels
    let px = x.data, pg = g.data, pw = weight?.data
    let mean = stats.data, rstd = stats.data + C
    var sumG = [Double](repeating: 0, count: C), sumGXhat = sumG
    if needW || needB || (needX && throughStatistics) {
        let parts = Tensor(uninitialized: [2, L.blocks, C])
        let p = parts.data, p2 = parts.data + L.blocks * C
        L.forEachBlock { blk, rows in
            let o = rows.lowerBound * C
            forEachLaneBlock(width: C, GradientSumsKernel<NoActivation>(
                x: px + o, g: pg + o, dzOut: nil, rows: rows.count, stride: C, mean: mean, rstd: rstd,
                scale: rstd, shift: mean, sumDz: p + blk * C, sumDzXhat: p2 + blk * C))
        }
        sumG = L.totals(p)
        sumGXhat = L.totals(p2)
    }
    var dx: Tensor?
    if needX {
        let coefs = Tensor(uninitialized: [3, C])
        let coefA = coefs.data, coefB = coefs.data + C, coefC = coefs.data + 2 * C
        let inverseRows = 1 / Double(L.rows)
        for c in 0..<C {
            let rs = Double(rstd[c]), a = rs * Double(pw?[c] ?? 1)
            coefA[c] = Float(a)
            coefB[c] = throughStatistics ? Float(a * rs * sumGXhat[c] * inverseRows) : 0
            coefC[c] = throughStatistics ? Float(a * sumG[c] * inverseRows) : 0
        }
        let out = Tensor(uninitialized: x.shape)
        let pdx = out.data
        L.forEachBlock { _, rows in
            let o = rows.lowerBound * C
            forEachLaneBlock(width: C, InputGradientKernel(dz: pg + o, x: px + o, dx: pdx + o, rows: rows.count,
                                                           stride: C, mean: mean, a: coefA, b: coefB, k: coefC))
        }
        dx = out
    }
    let dw = needW ? Tensor(sumGXhat.map { Float($0) }, shape: [C]) : nil
    let db = needB ? Tensor(sumG.map { Float($0) }, shape: [C]) : nil
    return (dx, dw, db)
}

/// Synchronised batch norm's backward over `[rows, C]` (see `batchNorm`): one all-reduce of
/// the per-channel sums Σg and Σg·x̂, then dx row by row; dw, db are this rank's sums.
func synchronizedBatchNormBackward(_ L: BatchNormLayout, g: Tensor, x: Tensor, weight: Tensor?, stats: Tensor,
                                   count: Int, reducer: ReplicaReducer) -> (Tensor, Tensor, Tensor) {
    let C = L.channels, rows = L.rows
    let mean = stats.data, rstd = stats.data + C
    let pg = g.data, px = x.data
    var sums = [Double](repeating: 0, count: 2 * C)  // Σg, then Σg·x̂
    for r in 0..<rows {
        for c in 0..<C {
            let gv = Double(pg[r * C + c]), xhat = Double((px[r * C + c] - mean[c]) * rstd[c])
            sums[c] += gv
            sums[C + c] += gv * xhat
        }
    }
    let db = Tensor(sums[0..<C].map { Float($0) }, shape: [C])
    let dw = Tensor(sums[C...].map { Float($0) }, shape: [C])
    do { try reducer.sumAcrossReplicas(&sums) } catch {
        preconditionFailure("synchronised batch norm: all-reduce of the gradient sums failed: \(error)")
    }
    let n = Float(count)
    var meanG = [Float](repeating: 0, count: C), meanGX = meanG, scale = meanG
    for c in 0..<C {
        meanG[c] = Float(sums[c]) / n
        meanGX[c] = Float(sums[C + c]) / n
        scale[c] = (weight?.data[c] ?? 1) * rstd[c]
    }
    let dx = Tensor(uninitialized: x.shape)
    let pd = dx.data
    for r in 0..<rows {
        for c in 0..<C {
            let i = r * C + c
            let xhat = (px[i] - mean[c]) * rstd[c]
            pd[i] = scale[c] * (pg[i] - meanG[c] - xhat * meanGX[c])
        }
    }
    return (dx, dw, db)
}
