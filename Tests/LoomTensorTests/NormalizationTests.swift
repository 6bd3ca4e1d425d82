import Foundation
import Testing
import LoomTensor

/// Double-precision references, written independently of the kernels.
enum NormReference {
    /// Group norm (optionally followed by SiLU) of a `[N, …, C]` array.
    static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Double = 1e-5,
                          silu: Bool = false) -> [Double] {
        let n = x.shape[0], c = x.shape.last!, p = x.count / (n * c), cg = c / groups
        var out = [Double](repeating: 0, count: x.count)
        for s in 0..<n {
            for g in 0..<groups {
                var idx: [Int] = []
                for q in 0..<p { for j in 0..<cg { idx.append((s * p + q) * c + g * cg + j) } }
                let mean = idx.reduce(0.0) { $0 + Double(x.data[$1]) } / Double(idx.count)
                let variance = idx.reduce(0.0) { $0 + pow(Double(x.data[$1]) - mean, 2) } / Double(idx.count)
                for i in idx {
                    let ch = i % c
                    var y = (Double(x.data[i]) - mean) / (variance + eps).squareRoot()
                    y = y * Double(weight?.data[ch] ?? 1) + Double(bias?.data[ch] ?? 0)
                    out[i] = silu ? y / (1 + Foundation.exp(-y)) : y
                }
            }
        }
        return out
    }

    /// Mean and biased variance of the values at `indices`.
    static func moments(_ x: Tensor, _ indices: [Int]) -> (mean: Double, variance: Double) {
        let mean = indices.reduce(0.0) { $0 + Double(x.data[$1]) } / Double(indices.count)
        let variance = indices.reduce(0.0) { $0 + pow(Double(x.data[$1]) - mean, 2) } / Double(indices.count)
        return (mean, variance)
    }

    static func maxDifference(_ a: Tensor, _ b: [Double]) -> Double {
        zip(a.array, b).map { abs(Double($0) - $1) }.max() ?? 0
    }
}

@Suite struct NormalizationTests {
    // MARK: Group norm

    @Test func groupNormHasZeroMeanUnitVariancePerGroup() {
        var s = RandomStream(key: 5)
        let x = Tensor.uniform([3, 4, 5, 15], low: -2, high: 3, stream: &s)
        let y = groupNorm(x, groups: 5, weight: nil, bias: nil, eps: 0)
        for n in 0..<3 {
            for g in 0..<5 {
                var idx: [Int] = []
                for p in 0..<20 { for j in 0..<3 { idx.append((n * 20 + p) * 15 + g * 3 + j) } }
                let (mean, variance) = NormReference.moments(y, idx)
                #expect(abs(mean) < 1e-5)
                #expect(abs(variance - 1) < 1e-4)
            }
        }
    }

    @Test(arguments: [([2, 3, 3, 15], 5), ([2, 2, 2, 34], 2), ([9, 2, 3, 48], 4), ([4, 7], 7), ([1, 5, 64], 32)]
          as [([Int], Int)])
    func groupNormMatchesDoubleReference(shape: [Int], groups: Int) {
        var s = RandomStream(key: 6)
        let c = shape.last!
        let x = Tensor.normal(shape, mean: 3, std: 2, stream: &s)
        let w = Tensor.uniform([c], low: 0.5, high: 1.5, stream: &s)
        let b = Tensor.uniform([c], low: -1, high: 1, stream: &s)
        let plain = groupNorm(x, groups: groups, weight: w, bias: b)
        #expect(NormReference.maxDifference(plain, NormReference.groupNorm(x, groups: groups, weight: w, bias: b)) < 2e-5)
        let fused = groupNormSiLU(x, groups: groups, weight: w, bias: b)
        #expect(NormReference.maxDifference(fused, NormReference.groupNorm(x, groups: groups, weight: w, bias: b, silu: true)) < 2e-5)
        let composed = groupNorm(x, groups: groups, weight: w, bias: b).silu()
        #expect(zip(fused.array, composed.array).allSatisfy { abs($0 - $1) <= 1e-5 })
    }

    /// Statistics come from one pass of shifted moments: they must not cancel when the mean
    /// dwarfs the spread (a naive E[x²] − E[x]² in float loses every digit here).
    @Test func largeMeanDoesNotCancel() {
        var s = RandomStream(key: 15)
        let x = Tensor.normal([3, 4, 4, 24], mean: 1000, std: 0.5, stream: &s)
        let gn = groupNorm(x, groups: 4, weight: nil, bias: nil)
        #expect(NormReference.maxDifference(gn, NormReference.groupNorm(x, groups: 4, weight: nil, bias: nil)) < 2e-4)
        let bn = batchNorm(x, weight: nil, bias: nil, runningMean: .zeros([24]), runningVar: .ones([24]), training: true)
        let perChannel = NormReference.groupNorm(x.reshaped([1, 48, 24]), groups: 24, weight: nil, bias: nil)
        #expect(NormReference.maxDifference(bn, perChannel) < 2e-4)
    }

    @Test(arguments: [([2, 3, 2, 15], 5), ([2, 2, 2, 34], 2), ([8, 2, 1, 36], 4)] as [([Int], Int)])
    func groupNormGradients(shape: [Int], groups: Int) {
        let c = shape.last!
        let xs = GradCheck.inputs([shape, [c], [c]], low: -1.5, high: 1.5)
        #expect(GradCheck.maxError(xs) { groupNorm($0[0], groups: groups, weight: $0[1], bias: $0[2]) } < 1e-2)
        #expect(GradCheck.maxError(xs) { groupNormSiLU($0[0], groups: groups, weight: $0[1], bias: $0[2]) } < 1e-2)
        let xOnly = [xs[0]]
        #expect(GradCheck.maxError(xOnly) { groupNormSiLU($0[0], groups: groups, weight: nil, bias: nil) } < 1e-2)
    }

    @Test func groupNormSecondOrder() {
        let xs = GradCheck.inputs([[2, 2, 2, 9], [9], [9]], low: -1.5, high: 1.5, seed: 3)
        #expect(GradCheck.maxSecondOrderError(xs) { groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2]) } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { groupNormSiLU($0[0], groups: 3, weight: $0[1], bias: $0[2]) } < 2e-2)
    }

    /// The composite backward (used when building a graph) must give the same first-order
    /// gradient as the fused kernels, which the finite-difference tests check.
    @Test func compositeBackwardMatchesFusedBackward() {
        let xs = GradCheck.inputs([[3, 4, 4, 40], [40], [40]], low: -2, high: 2, seed: 8)
        var s = RandomStream(key: 9)
        let g = Tensor.normal([3, 4, 4, 40], stream: &s)
        let (sum, squares, count) = batchNormStatistics(xs[0])
        let ops: [() -> Tensor] = [
            { groupNorm(xs[0], groups: 4, weight: xs[1], bias: xs[2]) },
            { groupNormSiLU(xs[0], groups: 4, weight: xs[1], bias: xs[2]) },
            { layerNorm(xs[0], weight: xs[1], bias: xs[2]) },
            { batchNorm(xs[0], weight: xs[1], bias: xs[2], runningMean: .zeros([40]), runningVar: .ones([40]), training: true) },
            { batchNorm(xs[0], weight: xs[1], bias: xs[2], runningMean: .zeros([40]), runningVar: .ones([40]), training: true,
                        statistics: batchNormMoments(sum: sum.map { $0 * 1.1 }, sumOfSquares: squares, count: count)) },
            { batchNorm(xs[0], weight: xs[1], bias: xs[2], runningMean: .ones([40]) * 0.3, runningVar: .ones([40]) * 2,
                        training: false) },
        ]
        for (k, f) in ops.enumerated() {
            let fused = grad(of: f(), wrt: xs, gradOutput: g)
            let composite = grad(of: f(), wrt: xs, gradOutput: g, createGraph: true)
            for (a, b) in zip(fused, composite) {
                let scale = b.array.map { abs($0) }.max()!
                #expect(zip(a.array, b.array).allSatisfy { abs($0 - $1) <= 2e-5 * max(1, scale) }, "op \(k)")
            }
        }
    }

    @Test func resultsDoNotDependOnThreadCount() {
        // Large enough that every op splits its work across threads.
        let xs = GradCheck.inputs([[16, 16, 16, 32], [32], [32]], seed: 4)
        var s = RandomStream(key: 10)
        let g = Tensor.normal([16, 16, 16, 32], stream: &s)
        func run() -> [[Float]] {
            let y = groupNormSiLU(xs[0], groups: 8, weight: xs[1], bias: xs[2])
            let l = layerNorm(xs[0], weight: xs[1], bias: xs[2])
            let b = batchNorm(xs[0], weight: xs[1], bias: xs[2], runningMean: .zeros([32]), runningVar: .ones([32]),
                              training: true)
            return [y.array, l.array, b.array] + grad(of: y, wrt: xs, gradOutput: g).map(\.array)
                + grad(of: l, wrt: xs, gradOutput: g).map(\.array) + grad(of: b, wrt: xs, gradOutput: g).map(\.array)
        }
        let one = Parallel.withThreads(1, run)
        let two = Parallel.withThreads(2, run)
        #expect(one == two)
    }

    // MARK: Layer norm

    @Test func layerNormMatchesClosedForm() {
        var s = RandomStream(key: 11)
        let x = Tensor.normal([5, 3, 37], mean: -4, std: 3, stream: &s)
        let y = layerNorm(x, weight: nil, bias: nil, eps: 0)
        for row in 0..<15 {
            let (mean, variance) = NormReference.moments(y, Array(row * 37..<(row + 1) * 37))
            #expect(abs(mean) < 1e-5)
            #expect(abs(variance - 1) < 1e-4)
        }
        // With affine: a per-row group norm of the transposed problem is the same thing.
        let w = Tensor.uniform([37], low: 0.5, high: 1.5, stream: &s), b = Tensor.uniform([37], stream: &s)
        let reference = NormReference.groupNorm(x.reshaped([15, 37]), groups: 1, weight: w, bias: b)
        #expect(NormReference.maxDifference(layerNorm(x, weight: w, bias: b), reference) < 2e-5)
    }

    @Test func layerNormGradients() {
        let xs = GradCheck.inputs([[3, 2, 37], [37], [37]], low: -1.5, high: 1.5)
        #expect(GradCheck.maxError(xs) { layerNorm($0[0], weight: $0[1], bias: $0[2]) } < 1e-2)
        #expect(GradCheck.maxError([xs[0]]) { layerNorm($0[0], weight: nil, bias: nil) } < 1e-2)
        let ys = GradCheck.inputs([[4, 7], [7], [7]], low: -1.5, high: 1.5, seed: 2)
        #expect(GradCheck.maxSecondOrderError(ys) { layerNorm($0[0], weight: $0[1], bias: $0[2]) } < 2e-2)
        #expect(GradCheck.maxSecondOrderError([ys[0]]) { layerNorm($0[0], weight: nil, bias: nil, eps: 1e-6) } < 2e-2)
    }

    // MARK: Batch norm

    @Test func batchNormTrainingNormalisesAndUpdatesRunningStatistics() {
        var s = RandomStream(key: 12)
        let x = Tensor.normal([4, 3, 2, 5], mean: 2, std: 3, stream: &s)
        let runningMean = Tensor.uniform([5], stream: &s), runningVar = Tensor.uniform([5], low: 0.5, high: 2, stream: &s)
        let (oldMean, oldVar) = (runningMean.array, runningVar.array)
        let y = batchNorm(x, weight: nil, bias: nil, runningMean: runningMean, runningVar: runningVar,
                          training: true, momentum: 0.3, eps: 0)
        for c in 0..<5 {
            let idx = Array(stride(from: c, to: x.count, by: 5))
            let (ym, yv) = NormReference.moments(y, idx)
            #expect(abs(ym) < 1e-5 && abs(yv - 1) < 1e-4)
            let (mean, variance) = NormReference.moments(x, idx)
            let n = Double(idx.count)
            #expect(abs(Double(runningMean.data[c]) - (0.7 * Double(oldMean[c]) + 0.3 * mean)) < 1e-6)
            #expect(abs(Double(runningVar.data[c]) - (0.7 * Double(oldVar[c]) + 0.3 * variance * n / (n - 1))) < 1e-5)
        }
    }

    @Test func batchNormEvalIsAffineWithRunningStatistics() {
        var s = RandomStream(key: 13)
        let x = Tensor.normal([6, 7], stream: &s)
        let w = Tensor.uniform([7], low: 0.5, high: 1.5, stream: &s), b = Tensor.uniform([7], stream: &s)
        let rm = Tensor.uniform([7], stream: &s), rv = Tensor.uniform([7], low: 0.5, high: 2, stream: &s)
        let (rmBefore, rvBefore) = (rm.array, rv.array)
        let y = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: false)
        for i in 0..<x.count {
            let c = i % 7
            let expected = (Double(x.data[i]) - Double(rm.data[c])) / (Double(rv.data[c]) + 1e-5).squareRoot()
                * Double(w.data[c]) + Double(b.data[c])
            #expect(abs(Double(y.data[i]) - expected) < 1e-5)
        }
        #expect(rm.array == rmBefore && rv.array == rvBefore)
    }

    @Test func batchNormGradients() {
        let xs = GradCheck.inputs([[4, 3, 2, 5], [5], [5]], low: -1.5, high: 1.5)
        for training in [true, false] {
            let f = { (t: [Tensor]) in
                batchNorm(t[0], weight: t[1], bias: t[2], runningMean: .zeros([5]), runningVar: .ones([5]) * 2,
                          training: training)
            }
            #expect(GradCheck.maxError(xs, f) < 1e-2)
            #expect(GradCheck.maxSecondOrderError(xs, f) < 2e-2)
        }
        let ys = GradCheck.inputs([[3, 18]], low: -1.5, high: 1.5, seed: 7)
        #expect(GradCheck.maxError(ys) {
            batchNorm($0[0], weight: nil, bias: nil, runningMean: .zeros([18]), runningVar: .ones([18]), training: true)
        } < 1e-2)
    }

    /// batchNorm with a fused ReLU or LeakyReLU gives the values and first-order gradients of
    /// the separate ops bit for bit (training, eval, with and without the affine weights), its
    /// composite backward agrees with them, and finite differences check both orders.
    @Test func fusedActivationMatchesSeparateOps() {
        var s = RandomStream(key: 31)
        let x = Tensor.normal([6, 5, 4, 40], mean: 0.3, std: 1.2, stream: &s)
        let w = Tensor.uniform([40], low: 0.5, high: 1.5, stream: &s), b = Tensor.uniform([40], low: -0.5, high: 0.5, stream: &s)
        let g = Tensor.normal(x.shape, stream: &s)
        for t in [x, w, b] { t.requiresGrad = true }
        let acts: [(FusedActivation, (Tensor) -> Tensor)] = [(.relu, { $0.relu() }), (.leakyReLU(slope: 0.2), { $0.leakyRelu(0.2) })]
        for (fusedAct, separate) in acts {
            for training in [true, false] {
                for affine in [true, false] {
                    let wrt = affine ? [x, w, b] : [x]
                    func op(_ a: FusedActivation) -> Tensor {
                        batchNorm(x, weight: affine ? w : nil, bias: affine ? b : nil, runningMean: .ones([40]) * 0.1,
                                  runningVar: .ones([40]) * 1.5, training: training, activation: a)
                    }
                    let what = "\(fusedAct) training \(training) affine \(affine)"
                    let fused = op(fusedAct), composed = separate(op(.none))
                    #expect(fused.array == composed.array, "forward \(what)")
                    let gf = grad(of: fused, wrt: wrt, gradOutput: g), gc = grad(of: composed, wrt: wrt, gradOutput: g)
                    for (a, c) in zip(gf, gc) { #expect(a.array == c.array, "gradient \(what)") }
                    let graph = grad(of: op(fusedAct), wrt: wrt, gradOutput: g, createGraph: true)
                    for (a, c) in zip(graph, gc) {
                        let scale = c.array.map { abs($0) }.max()!
                        #expect(zip(a.array, c.array).allSatisfy { abs($0 - $1) <= 2e-5 * max(1, scale) }, "composite \(what)")
                    }
                }
            }
        }
        let xs = GradCheck.inputs([[4, 3, 2, 5], [5], [5]], low: -1.5, high: 1.5, seed: 12)
        let f = { (t: [Tensor]) in
            batchNorm(t[0], weight: t[1], bias: t[2], runningMean: .zeros([5]), runningVar: .ones([5]), training: true,
                      activation: .leakyReLU(slope: 0.2))
        }
        #expect(GradCheck.maxError(xs, f) < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs, f) < 2e-2)
    }

    @Test func suppliedStatisticsMatchOwnStatistics() {
        // One rank's all-reduce is the identity: supplied statistics must reproduce the plain op.
        var s = RandomStream(key: 14)
        let x = Tensor.normal([8, 3, 3, 20], mean: 1, std: 2, stream: &s)
        x.requiresGrad = true
        let w = Tensor.uniform([20], low: 0.5, high: 1.5, stream: &s), b = Tensor.uniform([20], stream: &s)
        w.requiresGrad = true
        let g = Tensor.normal(x.shape, stream: &s)
        let (sum, squares, count) = batchNormStatistics(x)
        #expect(count == 72)
        for c in [0, 7, 19] {
            let idx = Array(stride(from: c, to: x.count, by: 20))
            // Blocks of rows are summed in float: errors at float resolution of Σ|x| and Σx².
            let absSum = idx.reduce(0.0) { $0 + abs(Double(x.data[$1])) }
            let exactSquares = idx.reduce(0.0) { $0 + pow(Double(x.data[$1]), 2) }
            #expect(abs(sum[c] - idx.reduce(0.0) { $0 + Double(x.data[$1]) }) < 1e-6 * absSum)
            #expect(abs(squares[c] - exactSquares) < 1e-6 * exactSquares)
        }
        let (rm1, rv1, rm2, rv2) = (Tensor.zeros([20]), Tensor.ones([20]), Tensor.zeros([20]), Tensor.ones([20]))
        let own = batchNorm(x, weight: w, bias: b, runningMean: rm1, runningVar: rv1, training: true)
        let given = batchNorm(x, weight: w, bias: b, runningMean: rm2, runningVar: rv2, training: true,
                              statistics: batchNormMoments(sum: sum, sumOfSquares: squares, count: count))
        #expect(zip(own.array, given.array).allSatisfy { abs($0 - $1) < 1e-5 })
        #expect(zip(rv1.array, rv2.array).allSatisfy { abs($0 - $1) < 1e-6 })
        for (a, b) in zip(grad(of: own, wrt: [x, w], gradOutput: g), grad(of: given, wrt: [x, w], gradOutput: g)) {
            #expect(zip(a.array, b.array).allSatisfy { abs($0 - $1) < 1e-4 })
        }
        // A global count (two ranks) changes only the running variance's unbiasing.
        let rv3 = Tensor.ones([20])
        _ = batchNorm(x, weight: w, bias: b, runningMean: .zeros([20]), runningVar: rv3, training: true,
                      momentum: 1, statistics: batchNormMoments(sum: sum, sumOfSquares: squares, count: count),
                      statisticsCount: 144)
        let variance0 = squares[0] / 72 - pow(sum[0] / 72, 2)
        #expect(abs(Double(rv3.data[0]) - variance0 * 144 / 143) < 1e-5)
    }
}

@Suite struct NormBenchmarkTests {
    /// Release-mode figures; runs when LOOM_BENCH is set.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["LOOM_BENCH"] != nil))
    func groupNormSiLUBenchmark() {
        let (f, b) = NormBenchmark.groupNormSiLU(repeats: 50)
        let before = BufferPool.shared.systemAllocations
        _ = NormBenchmark.groupNormSiLU(repeats: 3)
        print("groupNormSiLU [64,16,16,64] G=8, \(Parallel.threads) thread(s): forward \(f) ms, backward \(b) ms")
        #expect(BufferPool.shared.systemAllocations == before)
    }
}

