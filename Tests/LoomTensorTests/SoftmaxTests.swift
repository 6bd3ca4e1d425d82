import Testing
import Foundation
import LoomTensor

@Suite struct SoftmaxTests {
    /// log-softmax of one row in double precision.
    private func logSoftmaxRow(_ x: [Float]) -> [Double] {
        let m = Double(x.max()!)
        let lse = m + Foundation.log(x.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
        return x.map { Double($0) - lse }
    }

    @Test func rowsSumToOneAndMatchDoublePrecision() {
        let x = GradCheck.inputs([[4, 37]], low: -5, high: 5)[0]
        let y = x.softmax(), l = x.logSoftmax()
        for r in 0..<4 {
            let row = Array(x.array[(r * 37)..<((r + 1) * 37)])
            let expected = logSoftmaxRow(row)
            #expect(abs(y.array[(r * 37)..<((r + 1) * 37)].reduce(0.0) { $0 + Double($1) } - 1) < 1e-5)
            for j in 0..<37 {
                #expect(abs(Double(l.data[r * 37 + j]) - expected[j]) < 1e-5)
                #expect(abs(Double(y.data[r * 37 + j]) - Foundation.exp(expected[j])) < 1e-6)
            }
        }
    }

    @Test func stridedAxisMatchesLastAxis() {
        // Softmax over axis 1 of [2, 5, 3] equals the last-axis softmax of the transposed tensor.
        let x = GradCheck.inputs([[2, 5, 3]], low: -3, high: 3)[0]
        let viaTranspose = x.transposed(1, 2).softmax().transposed(1, 2)
        #expect(zip(x.softmax(axis: 1).array, viaTranspose.array).allSatisfy { abs($0 - $1) < 1e-6 })
        let logViaTranspose = x.transposed(1, 2).logSoftmax().transposed(1, 2)
        #expect(zip(x.logSoftmax(axis: -2).array, logViaTranspose.array).allSatisfy { abs($0 - $1) < 1e-5 })
    }

    @Test func stableForLargeInputs() {
        let x = Tensor([1000, 999, -1000, 0], shape: [1, 4])
        let y = x.softmax().array, l = x.logSoftmax().array
        #expect(abs(Double(y[0]) - 1 / (1 + Foundation.exp(-1.0))) < 1e-6)
        #expect(y[2] < 1e-30 && y.allSatisfy { $0.isFinite })
        #expect(abs(l[1] - (-1 - Float(Foundation.log(1 + Foundation.exp(-1.0))))) < 1e-4)
        // log_softmax at −1000: −1000 − logsumexp = −1000 − (1000 + log(1 + e⁻¹ + e⁻¹⁰⁰⁰ + e⁻²⁰⁰⁰)).
        #expect(abs(Double(l[2]) - (-2000 - Foundation.log(1 + Foundation.exp(-1.0)))) < 1e-2)
    }

    @Test func gradients() {
        let xs = GradCheck.inputs([[3, 37]], low: -2, high: 2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].softmax() } < 1e-2)
        #expect(GradCheck.maxError(xs) { $0[0].logSoftmax() } < 1e-2)  // a shared shift: larger eps for float32
        let ys = GradCheck.inputs([[2, 5, 3]], low: -2, high: 2)
        #expect(GradCheck.maxError(ys, eps: 1e-3) { $0[0].softmax(axis: 1) } < 1e-2)
        #expect(GradCheck.maxError(ys, eps: 1e-3) { $0[0].logSoftmax(axis: 0) } < 1e-2)
    }

    @Test func secondOrder() {
        let xs = GradCheck.inputs([[3, 7]], low: -2, high: 2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[0].softmax() } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[0].logSoftmax() } < 2e-2)
        let ys = GradCheck.inputs([[2, 5, 3]], low: -2, high: 2)
        #expect(GradCheck.maxSecondOrderError(ys, eps: 1e-3) { $0[0].softmax(axis: 1) } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(ys, eps: 1e-3) { $0[0].logSoftmax(axis: 1) } < 2e-2)
    }

    @Test func fusedBackwardEqualsComposite() {
        for axis in [-1, 1] {
            for log in [false, true] {
                let x = GradCheck.inputs([[4, 6, 19]], low: -3, high: 3)[0]
                var s = RandomStream(key: 5)
                let g = Tensor.uniform([4, 6, 19], low: -1, high: 1, stream: &s)
                let f = { (t: Tensor) in log ? t.logSoftmax(axis: axis) : t.softmax(axis: axis) }
                let fused = grad(of: f(x), wrt: [x], gradOutput: g)[0]
                let composite = grad(of: f(x), wrt: [x], gradOutput: g, createGraph: true)[0]
                #expect(zip(fused.array, composite.array).allSatisfy { abs($0 - $1) < 1e-5 })
            }
        }
    }

    @Test(arguments: [Float(0), 0.1])
    func crossEntropyMatchesDoublePrecision(smoothing: Float) {
        let logits = GradCheck.inputs([[5, 11]], low: -3, high: 3)[0]
        let targets = [3, 0, 10, 3, 7]
        let loss = crossEntropyLoss(logits, targets, labelSmoothing: smoothing)
        var expected = 0.0
        for (i, t) in targets.enumerated() {
            let lsm = logSoftmaxRow(Array(logits.array[(i * 11)..<((i + 1) * 11)]))
            let eps = Double(smoothing)
            expected += -(1 - eps) * lsm[t] - eps / 11 * lsm.reduce(0, +)
        }
        expected /= 5
        #expect(abs(Double(loss.item) - expected) < 1e-5)
        #expect(GradCheck.maxError([logits], eps: 1e-3) { crossEntropyLoss($0[0], targets, labelSmoothing: smoothing) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError([logits], eps: 1e-3) { crossEntropyLoss($0[0], targets, labelSmoothing: smoothing) } < 2e-2)
    }
}
