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
///
/// `activation` is applied in the same passes (forward and backward), with the values of
/// the separate op (`relu`, `leakyRelu`), saving a trip through memory each way.
public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor, runningVar: Tensor,
                      training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                      statistics: (mean: Tensor, variance: Tensor)? = nil, statisticsCount: Int? = nil,
                      synchronizedBackward: ReplicaReducer? = nil, activation: FusedActivation = .none) -> Tensor {
    let mode = training ? "train" : "eval"
    switch activation {
    case .none:
        return batchNormOp(NoActivation(), "batch_norm_\(mode)", x, weight: weight, bias: bias, runningMean: runningMean,
                           runningVar: runningVar, training: training, momentum: momentum, eps: eps, statistics: statistics,
                           statisticsCount: statisticsCount, synchronizedBackward: synchronizedBackward)
    case .relu:
        return batchNormOp(ReLUActivation(), "batch_norm_relu_\(mode)", x, weight: weight, bias: bias, runningMean: runningMean,
                           runningVar: runningVar, training: training, momentum: momentum, eps: eps, statistics: statistics,
                           statisticsCount: statisticsCount, synchronizedBackward: synchronizedBackward)
    case .leakyReLU(let slope):
        return batchNormOp(LeakyReLUActivation(slope: slope), "batch_norm_leaky_relu_\(mode)", x, weight: weight, bias: bias,
                           runningMean: runningMean, runningVar: runningVar, training: training, momentum: momentum, eps: eps,
                           statistics: statistics, statisticsCount: statisticsCount, synchronizedBackward: synchronizedBackward)
    }
}

/// An activation that `batchNorm` applies in its own passes (DCGAN's BN → ReLU, BN → LeakyReLU).
public enum FusedActivation: Equatable, Sendable {
    /// None: the normalised values themselves.
    case none
    /// max(z, 0), as `Tensor.relu`.
    case relu
    /// z for z > 0, slope·z otherwise, as `Tensor.leakyRelu`.
    case leakyReLU(slope: Float)
}

func batchNormOp<A: NormActivation>(_ act: A, _ name: String, _ x: Tensor, weight: Tensor?, bias: Tensor?,
                                    runningMean: Tensor, runningVar: Tensor, training: Bool, momentum: Float, eps: Float,
                                    statistics: (mean: Tensor, variance: Tensor)?, statisticsCount: Int?,
                                    synchronizedBackward: ReplicaReducer?) -> Tensor {
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
    batchNormForward(act, L, x: x.data, y: out.data, mean: mean, rstd: rstd, weight: weight?.data, bias: bias?.data)
    let affine = AffineInputs(x, weight, bias)
    return out.recorded(name, affine.inputs) { g, needs in
        let needW = affine.needW(needs), needB = affine.needB(needs)
        if training, statistics != nil, let reducer = synchronizedBackward {
            let (dx, dw, db) = noGrad {
                let gz = A.isIdentity ? g : act.gradient(g, preActivation(L, x: x, weight: weight, bias: bias, stats: stats))
                return synchronizedBatchNormBackward(L, g: gz, x: x, weight: weight, stats: stats,
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
            var gz = g.reshaped([L.rows, C])
            if !A.isIdentity {
                var z = weight.map { xhat * $0.reshaped([C]) } ?? xhat
                if let bias { z = z + bias.reshaped([C]) }
                gz = act.gradient(gz, z)
            }
            let (dx, dw, db) = NormComposite.backward(
                gz: gz, xhat: xhat, std: stdT, weight: weight?.reshaped([C]), statShape: [1, C],
                affineShape: [1, C], throughStatistics: training, needX: needs[0], needW: needW, needB: needB)
            return affine.gradients(dx: dx?.reshaped(x.shape), dw: dw, db: db)
        }
        let (dx, dw, db) = batchNormBackward(act, L, g: g, x: x, weight: weight, bias: bias, stats: stats,
                                             throughStatistics: training, needX: needs[0], needW: needW, needB: needB)
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

/// Per channel scale = 1/std·w and shift = b, so that z = (x − mean)·scale + shift (a [2, C]
/// tensor: scale, then shift). The forward and the fused backward both use it, so z is
/// bit-identical in both.
func batchNormCoefficients(_ C: Int, rstd: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>?,
                           bias: UnsafeMutablePointer<Float>?) -> Tensor {
    let coefs = Tensor(uninitialized: [2, C])
    for c in 0..<C {
        coefs.data[c] = rstd[c] * (weight?[c] ?? 1)
        coefs.data[C + c] = bias?[c] ?? 0
    }
    return coefs
}

/// y = act((x − mean)·(1/std·w) + b) per channel.
func batchNormForward<A: NormActivation>(_ act: A, _ L: BatchNormLayout, x: UnsafeMutablePointer<Float>,
                                         y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                         rstd: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>?,
                                         bias: UnsafeMutablePointer<Float>?) {
    let C = L.channels
    let coefs = batchNormCoefficients(C, rstd: rstd, weight: weight, bias: bias)
    let scale = coefs.data, shift = coefs.data + C
    L.forEachBlock { _, rows in
        let o = rows.lowerBound * C
        forEachLaneBlock(width: C, NormalizeKernel(act: act, x: x + o, y: y + o, rows: rows.count, stride: C,
                                                   mean: mean, scale: scale, shift: shift))
    }
}

/// z = (x − mean)·(1/std·w) + b, the activation's input (for the synchronised backward).
func preActivation(_ L: BatchNormLayout, x: Tensor, weight: Tensor?, bias: Tensor?, stats: Tensor) -> Tensor {
    let z = Tensor(uninitialized: x.shape)
    batchNormForward(NoActivation(), L, x: x.data, y: z.data, mean: stats.data, rstd: stats.data + L.channels,
                     weight: weight?.data, bias: bias?.data)
    return z
}

/// Fused first-order backward, with dz = act'(z)·g (dz = g without an activation):
/// db = Σdz, dw = Σdz·x̂ per channel; in training dx = w/std·(dz − mean(dz) − x̂·mean(dz·x̂)),
/// in eval (or with `throughStatistics` false) dx = w/std·dz. dz is kept in dx's buffer
/// between the two passes.
func batchNormBackward<A: NormActivation>(_ act: A, _ L: BatchNormLayout, g: Tensor, x: Tensor, weight: Tensor?,
                                          bias: Tensor?, stats: Tensor, throughStatistics: Bool, needX: Bool,
                                          needW: Bool, needB: Bool) -> (Tensor?, Tensor?, Tensor?) {
    let C = L.channels
    let px = x.data, pg = g.data, pw = weight?.data
    let mean = stats.data, rstd = stats.data + C
    let out = needX ? Tensor(uninitialized: x.shape) : nil
    let pdx = out?.data
    var sumG = [Double](repeating: 0, count: C), sumGXhat = sumG
    if needW || needB || (needX && (throughStatistics || !A.isIdentity)) {
        let coefs = batchNormCoefficients(C, rstd: rstd, weight: pw, bias: bias?.data)
        let parts = Tensor(uninitialized: [2, L.blocks, C])
        let p = parts.data, p2 = parts.data + L.blocks * C, scale = coefs.data, shift = coefs.data + C
        L.forEachBlock { blk, rows in
            let o = rows.lowerBound * C
            forEachLaneBlock(width: C, GradientSumsKernel(
                act: act, x: px + o, g: pg + o, dzOut: A.isIdentity ? nil : pdx.map { $0 + o }, rows: rows.count,
                stride: C, mean: mean, rstd: rstd, scale: scale, shift: shift, sumDz: p + blk * C,
                sumDzXhat: p2 + blk * C))
        }
        sumG = L.totals(p)
        sumGXhat = L.totals(p2)
    }
    var dx: Tensor?
    if let out, let pdx {
        let coefs = Tensor(uninitialized: [3, C])
        let coefA = coefs.data, coefB = coefs.data + C, coefC = coefs.data + 2 * C
        let inverseRows = 1 / Double(L.rows)
        for c in 0..<C {
            let rs = Double(rstd[c]), a = rs * Double(pw?[c] ?? 1)
            coefA[c] = Float(a)
            coefB[c] = throughStatistics ? Float(a * rs * sumGXhat[c] * inverseRows) : 0
            coefC[c] = throughStatistics ? Float(a * sumG[c] * inverseRows) : 0
        }
        let pdz = A.isIdentity ? pg : pdx
        L.forEachBlock { _, rows in
            let o = rows.lowerBound * C
            forEachLaneBlock(width: C, InputGradientKernel(dz: pdz + o, x: px + o, dx: pdx + o, rows: rows.count,
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
