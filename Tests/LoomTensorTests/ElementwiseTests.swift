import Testing
import LoomTensor

@Suite struct ElementwiseTests {
    @Test func broadcastShapes() {
        #expect(broadcastShape([2, 3, 4], [4]) == [2, 3, 4])
        #expect(broadcastShape([2, 1, 4], [3, 1]) == [2, 3, 4])
        #expect(broadcastShape([2, 3], [4]) == nil)
    }

    @Test func addBroadcastsLikeNumPy() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor([10, 20, 30], shape: [3])
        #expect((a + b).array == [11, 22, 33, 14, 25, 36])
        let c = Tensor([100, 200], shape: [2, 1])
        #expect((a + c).array == [101, 102, 103, 204, 205, 206])
        #expect((a - c).array == [-99, -98, -97, -196, -195, -194])
    }

    @Test(arguments: [
        ([2, 3], [2, 3]), ([2, 3], [3]), ([4, 1, 3], [2, 1]), ([2, 2, 2, 3], [2, 1, 1, 3]), ([3], []),
    ] as [([Int], [Int])])
    func binaryGradients(a: [Int], b: [Int]) {
        let xs = GradCheck.inputs([a, b], low: 0.5, high: 2)
        #expect(GradCheck.maxError(xs) { $0[0] + $0[1] } < 1e-2)
        #expect(GradCheck.maxError(xs) { $0[0] - $0[1] } < 1e-2)
        #expect(GradCheck.maxError(xs) { $0[0] * $0[1] } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0] / $0[1] } < 2e-2)
    }

    @Test func scalarOpsAndReshapeGradients() {
        let xs = GradCheck.inputs([[2, 3]])
        #expect(GradCheck.maxError(xs) { (2 - $0[0] * 3 + 1) / 4 } < 1e-2)
        #expect(GradCheck.maxError(xs) { (-$0[0]).reshaped([3, 2]) * Tensor([1, 2], shape: [2]) } < 1e-2)
        #expect(GradCheck.maxError(xs) { $0[0].expanded(to: [4, 2, 3]) } < 1e-2)
    }

    @Test func secondOrderThroughProducts() {
        // f = x·x·y: the Hessian terms are exercised by grad-of-grad.
        let xs = GradCheck.inputs([[2, 3], [3]], low: 0.5, high: 2)
        #expect(GradCheck.maxSecondOrderError(xs) { $0[0] * $0[0] * $0[1] } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[1] / $0[0] } < 3e-2)
    }

    @Test func closedFormSecondDerivative() {
        // d²/dx² of x³ = 6x.
        let x = Tensor([0.5, -1.5, 2], shape: [3], requiresGrad: true)
        let g = grad(of: (x * x * x).sum(), wrt: [x], createGraph: true)[0]
        #expect(g.array == [0.75, 6.75, 12])
        g.sum().backward()
        #expect(x.grad!.array == [3, -9, 12])
    }

    @Test func simdExpIsAccurate() {
        let xs = stride(from: -80.0, through: 80.0, by: 0.37).map { Float($0) }
        var out = [Float](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { simdMap(src.baseAddress!, $0.baseAddress!, xs.count, simdExp) }
        }
        for (x, y) in zip(xs, out) {
            let exact = Foundation.exp(Double(x))
            #expect(abs(Double(y) - exact) / exact < 1e-6, "exp(\(x))")
        }
    }

    @Test func philoxMatchesReferenceAndRestores() {
        // Philox4x32-10 known-answer test (Random123 kat_vectors: ctr = 0, key = 0).
        let (a, b, c, d) = RandomStream.block(key: 0, index: 0)
        #expect([a, b, c, d] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        var s1 = RandomStream(seed: 42, rank: 1, purpose: .noise)
        _ = Tensor.normal([7], stream: &s1)
        let saved = s1
        let next = Tensor.normal([5], stream: &s1).array
        var s2 = saved
        #expect(Tensor.normal([5], stream: &s2).array == next)
        #expect(RandomStream(seed: 42, rank: 0, purpose: .noise) != RandomStream(seed: 42, rank: 1, purpose: .noise))
    }
}

import Foundation

@Suite struct CoreUnaryTests {
    @Test func valuesMatchFoundation() {
        let x = Tensor([-3, -0.5, 0, 0.7, 2.5], shape: [5])
        for (i, v) in x.array.enumerated() {
            let d = Double(v)
            #expect(abs(Double(x.exp().array[i]) - Foundation.exp(d)) < 1e-5 * Foundation.exp(d))
            #expect(abs(Double(x.sigmoid().array[i]) - 1 / (1 + Foundation.exp(-d))) < 1e-6)
            #expect(abs(Double(x.tanh().array[i]) - Foundation.tanh(d)) < 1e-6)
            #expect(abs(Double(x.silu().array[i]) - d / (1 + Foundation.exp(-d))) < 1e-6)
        }
    }

    @Test func gradients() {
        let xs = GradCheck.inputs([[3, 37]], low: -3, high: 3)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].exp() } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].sigmoid() } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].tanh() } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].silu() } < 1e-2)
        let pos = GradCheck.inputs([[3, 5]], low: 0.5, high: 3)
        #expect(GradCheck.maxError(pos, eps: 1e-3) { $0[0].log() } < 1e-2)
        #expect(GradCheck.maxError(pos, eps: 1e-3) { $0[0].sqrt() } < 1e-2)
    }

    @Test func secondOrder() {
        let xs = GradCheck.inputs([[2, 9]], low: -2, high: 2)
        for f in [{ (t: Tensor) in t.exp() }, { $0.sigmoid() }, { $0.tanh() }, { $0.silu() }] {
            #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { f($0[0]) } < 2e-2)
        }
        let pos = GradCheck.inputs([[2, 5]], low: 0.5, high: 3)
        #expect(GradCheck.maxSecondOrderError(pos, eps: 1e-3) { $0[0].sqrt() } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(pos, eps: 1e-3) { $0[0].log() } < 2e-2)
    }
}
