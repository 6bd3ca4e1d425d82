import Foundation
import Testing
import LoomTensor

/// A naive per-axis reduction in double precision: the independent reference.
enum NaiveReduce {
    /// Groups the elements of `x` by their index with `axes` dropped (row-major order of
    /// the remaining axes) and folds each group with `combine`.
    static func groups(_ x: Tensor, axes: [Int]) -> [[Double]] {
        let shape = x.shape
        let ax = Set(axes.map { $0 < 0 ? $0 + shape.count : $0 })
        let kept = (0..<shape.count).filter { !ax.contains($0) }
        let outCount = kept.reduce(1) { $0 * shape[$1] }
        var out = [[Double]](repeating: [], count: outCount)
        for flat in 0..<x.count {
            var rem = flat, index = [Int](repeating: 0, count: shape.count)
            for d in stride(from: shape.count - 1, through: 0, by: -1) { index[d] = rem % shape[d]; rem /= shape[d] }
            var o = 0
            for d in kept { o = o * shape[d] + index[d] }
            out[o].append(Double(x.data[flat]))
        }
        return out
    }

    static func sum(_ x: Tensor, axes: [Int]) -> [Double] { groups(x, axes: axes).map { $0.reduce(0, +) } }

    static func variance(_ x: Tensor, axes: [Int], unbiased: Bool) -> [Double] {
        groups(x, axes: axes).map { g in
            let m = g.reduce(0, +) / Double(g.count)
            return g.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(g.count - (unbiased ? 1 : 0))
        }
    }
}

private func close(_ a: [Float], _ b: [Double], tol: Double = 1e-5) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { Swift.abs(Double($0) - $1) <= tol * Swift.max(1, Swift.abs($1)) }
}

@Suite struct ReductionTests {
    /// Axis sets covering the contiguous-block kernel (last axis, NHWC spatial, batch, all)
    /// and the general fallback (axes 0 and 2), with negative axes and unit extents.
    static let cases: [([Int], [Int])] = [
        ([3, 5, 7], [2]), ([3, 5, 7], [-1]), ([3, 5, 7], [0]), ([3, 5, 7], [1]), ([3, 5, 7], [0, 2]),
        ([3, 5, 7], [0, 1, 2]), ([2, 4, 3, 37], [1, 2]), ([2, 4, 3, 37], [0, -1]), ([5, 1, 37], [0, 1]),
        ([5, 1, 37], [1]), ([4, 37], []), ([37], [0]),
    ]

    @Test(arguments: cases)
    func sumAndMeanMatchNaive(shape: [Int], axes: [Int]) {
        let x = GradCheck.inputs([shape])[0]
        let expected = NaiveReduce.sum(x, axes: axes)
        let n = axes.map { shape[$0 < 0 ? $0 + shape.count : $0] }.reduce(1, *)
        #expect(close(x.sum(axes: axes).array, expected))
        #expect(close(x.mean(axes: axes).array, expected.map { $0 / Double(n) }))
        let norm = Set(axes.map { $0 < 0 ? $0 + shape.count : $0 })
        let dropped = shape.enumerated().filter { !norm.contains($0.offset) }.map(\.element)
        let kept = shape.enumerated().map { norm.contains($0.offset) ? 1 : $0.element }
        #expect(x.sum(axes: axes).shape == dropped)
        #expect(x.mean(axes: axes, keepDims: true).shape == kept)
        #expect(close(x.sum(axes: axes, keepDims: true).array, expected))
    }

    @Test(arguments: cases)
    func varianceMatchesNaive(shape: [Int], axes: [Int]) {
        guard !axes.isEmpty else { return }
        let x = GradCheck.inputs([shape], low: 2, high: 4)[0]
        #expect(close(x.variance(axes: axes).array, NaiveReduce.variance(x, axes: axes, unbiased: false), tol: 1e-4))
        let n = axes.map { shape[$0 < 0 ? $0 + shape.count : $0] }.reduce(1, *)
        let unbiased = x.variance(axes: axes, keepDims: true, unbiased: true).array
        if n == 1 {
            #expect(unbiased.allSatisfy { $0.isNaN })  // 0/0, as in PyTorch
        } else {
            #expect(close(unbiased, NaiveReduce.variance(x, axes: axes, unbiased: true), tol: 1e-4))
        }
    }

    @Test func maxValuesTiesAndNaN() {
        let x = Tensor([1, 3, 3, 2,
                        -5, -1, -4, -1,
                        0, 0, 0, 0], shape: [3, 4], requiresGrad: true)
        let m = x.max(axis: 1)
        #expect(m.array == [3, -1, 0])
        (m * Tensor([1, 2, 3], shape: [3])).sum().backward()
        // The first maximal element gets the whole gradient.
        #expect(x.grad!.array == [0, 1, 0, 0, 0, 2, 0, 0, 3, 0, 0, 0])
        let c = x.max(axis: 0, keepDims: true)
        #expect(c.shape == [1, 4] && c.array == [1, 3, 3, 2])
        #expect(x.max(axis: -2).array == [1, 3, 3, 2])
        let nan = Tensor([1, .nan, 5, 2], shape: [4]).max(axis: 0)
        #expect(nan.shape == [] && nan.item.isNaN)
    }

    @Test(arguments: [([3, 5, 7], 0), ([3, 5, 7], 1), ([3, 5, 7], -1), ([2, 37], 1), ([37], 0)] as [([Int], Int)])
    func maxMatchesNaive(shape: [Int], axis: Int) {
        let x = GradCheck.inputs([shape])[0]
        let expected = NaiveReduce.groups(x, axes: [axis]).map { $0.max()! }
        #expect(close(x.max(axis: axis).array, expected, tol: 0))
    }

    @Test func gradients() {
        let x = GradCheck.inputs([[3, 5, 7]])
        for axes in [[2], [0], [1], [0, 2], [1, 2], [0, 1, 2]] {
            #expect(GradCheck.maxError(x) { $0[0].sum(axes: axes) } < 1e-2, "sum \(axes)")
            #expect(GradCheck.maxError(x) { $0[0].mean(axes: axes, keepDims: true) } < 1e-2, "mean \(axes)")
            #expect(GradCheck.maxError(x, eps: 1e-3) { $0[0].variance(axes: axes) } < 1e-2, "var \(axes)")
            #expect(GradCheck.maxError(x, eps: 1e-3) { $0[0].variance(axes: axes, unbiased: true) } < 1e-2)
        }
        for axis in [0, 1, -1] {
            #expect(GradCheck.maxError(x, eps: 1e-3) { $0[0].max(axis: axis) } < 1e-2, "max \(axis)")
        }
    }

    @Test func secondOrder() {
        let x = GradCheck.inputs([[3, 5, 7]])
        // Sum, mean and max are linear or piecewise linear: squaring their result makes
        // the first-order graph pass through their backward with an x-dependent gradient.
        for axes in [[2], [0, 2], [1, 2]] {
            #expect(GradCheck.maxSecondOrderError(x, eps: 1e-3) { $0[0].sum(axes: axes).square() } < 2e-2)
            #expect(GradCheck.maxSecondOrderError(x, eps: 1e-3) { $0[0].mean(axes: axes, keepDims: true).square() } < 2e-2)
            #expect(GradCheck.maxSecondOrderError(x, eps: 1e-3) { $0[0].variance(axes: axes) } < 2e-2)
        }
        for axis in [0, 1, -1] {
            #expect(GradCheck.maxSecondOrderError(x, eps: 1e-3) { $0[0].max(axis: axis).square() } < 2e-2)
        }
    }

    @Test func resultsDoNotDependOnThreadCount() {
        var s = RandomStream(key: 21)
        let x = Tensor.normal([8, 64, 48, 16], stream: &s)
        func run() -> [[Float]] {
            [x.sum(axes: [1, 2]).array, x.sum(axes: [-1]).array, x.sum(axes: [0]).array,
             x.max(axis: 2).array, x.variance(axes: [0, 1, 2]).array]
        }
        let one = Parallel.withThreads(1, run)
        #expect(Parallel.withThreads(2, run) == one)
    }
}
