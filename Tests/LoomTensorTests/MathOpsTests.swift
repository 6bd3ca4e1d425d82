import Foundation
import Testing
import LoomTensor

/// Inputs for ops with kinks (relu, abs, clamp, l1): finite differences across a kink are
/// meaningless, so values closer than `margin` to one are pushed away from it.
enum KinkFree {
    static func inputs(_ shape: [Int], avoiding kinks: [Float] = [0], margin: Float = 0.05,
                       low: Float = -1, high: Float = 1, seed: UInt64 = 3) -> Tensor {
        let t = GradCheck.inputs([shape], low: low, high: high, seed: seed)[0]
        for i in 0..<t.count {
            for k in kinks where Swift.abs(t.data[i] - k) < margin {
                t.data[i] = t.data[i] >= k ? k + 2 * margin : k - 2 * margin
            }
        }
        return t
    }

    /// Largest difference between the first-order gradient from the fused kernels (tape
    /// off) and from the composite formulas (`createGraph`) for ⟨f(xs), w⟩.
    static func fusedVsComposite(_ xs: [Tensor], _ f: ([Tensor]) -> Tensor) -> Float {
        let y = f(xs)
        var ws = RandomStream(key: 5)
        let w = Tensor.uniform(y.shape, low: -1, high: 1, stream: &ws)
        let fused = grad(of: (f(xs) * w).sum(), wrt: xs)
        let composite = grad(of: (f(xs) * w).sum(), wrt: xs, createGraph: true)
        var worst: Float = 0
        for (a, b) in zip(fused, composite) {
            for (u, v) in zip(a.array, b.array) { worst = Swift.max(worst, Swift.abs(u - v) / Swift.max(1, Swift.abs(u))) }
        }
        return worst
    }
}

@Suite struct MathOpsTests {
    @Test func powMatchesLibm() {
        let pos = GradCheck.inputs([[37]], low: 0.1, high: 3)[0]
        for p: Float in [0, 1, 2, 3, 5, -1, -2, 0.5, -0.5, 1.7, -2.3] {
            let y = pos.pow(p).array
            for i in 0..<pos.count {
                let exact = Foundation.pow(Double(pos.data[i]), Double(p))
                #expect(Swift.abs(Double(y[i]) - exact) <= 2e-6 * Swift.max(1, Swift.abs(exact)), "pow(\(pos.data[i]), \(p))")
            }
        }
        // Integer powers keep the sign of negative bases; fractional ones give NaN.
        let neg = Tensor([-2, -0.5, 3], shape: [3])
        #expect(neg.pow(3).array == [-8, -0.125, 27])
        #expect(neg.pow(-1).array == [-0.5, -2, 1 / 3])
        #expect(neg.pow(0.5).array[0].isNaN)
    }

    @Test func simpleValues() {
        let x = Tensor([-2, -0.5, 0, 0.25, 4], shape: [5])
        #expect(x.square().array == [4, 0.25, 0, 0.0625, 16])
        #expect(x.abs().array == [2, 0.5, 0, 0.25, 4])
        #expect(x.clamped(min: -1, max: 1).array == [-1, -0.5, 0, 0.25, 1])
        #expect(x.clamped(min: nil, max: 0.1).array == [-2, -0.5, 0, 0.1, 0.1])
        #expect(x.clamped(min: 0, max: nil).array == [0, 0, 0, 0.25, 4])
        #expect(x.relu().array == [0, 0, 0, 0.25, 4])
        #expect(x.leakyRelu(0.2).array == [-0.4, -0.1, 0, 0.25, 4])
        #expect(x.leakyRelu().array == [-0.02, -0.005, 0, 0.25, 4])
        let r = Tensor([0.25, 4, 9], shape: [3]).rsqrt().array
        #expect(zip(r, [2, 0.5, 1.0 / 3]).allSatisfy { Swift.abs($0 - Float($1)) < 1e-6 })
    }

    @Test func erfMatchesFoundation() {
        // A dense grid over [-6, 6] (whole SIMD blocks and a tail), plus the ends of the line.
        let n = 12_007
        let xs = (0..<n).map { Float(-6 + 12 * Double($0) / Double(n - 1)) }
        let y = Tensor(xs, shape: [n]).erf().array
        var worst = 0.0
        for (x, v) in zip(xs, y) { worst = Swift.max(worst, Swift.abs(Double(v) - Foundation.erf(Double(x)))) }
        #expect(worst < 1e-6)
        let ends = Tensor([-.infinity, .infinity, 0, -0.0, 20, -20], shape: [6]).erf().array
        #expect(ends == [-1, 1, 0, 0, 1, -1])
        #expect(Tensor([.nan], shape: [1]).erf().array[0].isNaN)
    }

    @Test func expEdgesAfterMaskedClamp() {
        // simdExp clamps with masks and rounds with the 1.5·2^23 trick: check the ends.
        let y = Tensor([-200, -87, -0.3466, 0.3466, 88, .nan, 1e-8], shape: [7]).exp().array
        #expect(y[0] >= 0 && y[0] < 1.2e-38)
        for (i, x) in [(1, -87.0), (2, -0.3466), (3, 0.3466), (4, 88.0), (6, 1e-8)] {
            #expect(Swift.abs(Double(y[i]) / Foundation.exp(x) - 1) < 1e-6, "exp(\(x))")
        }
        #expect(y[5].isNaN)
    }

    @Test func geluClosedForms() {
        let zero = Tensor([0], shape: [1])
        #expect(zero.gelu().item == 0)
        #expect(zero.gelu(approximate: .tanh).item == 0)
        let xs = GradCheck.inputs([[53]], low: -5, high: 5)[0]
        let exact = xs.gelu().array, approx = xs.gelu(approximate: .tanh).array
        for i in 0..<xs.count {
            let x = Double(xs.data[i])
            let phi = 0.5 * (1 + Foundation.erf(x / 2.0.squareRoot()))
            #expect(Swift.abs(Double(exact[i]) - x * phi) < 1e-6 * Swift.max(1, Swift.abs(x)))
            let t = Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))
            #expect(Swift.abs(Double(approx[i]) - 0.5 * x * (1 + t)) < 2e-6 * Swift.max(1, Swift.abs(x)))
            #expect(Swift.abs(Double(approx[i]) - x * phi) < 1e-3)  // the approximation is close
        }
    }

    @Test func smoothOpGradients() {
        let xs = GradCheck.inputs([[37]], low: -2.5, high: 2.5)
        let pos = GradCheck.inputs([[37]], low: 0.3, high: 2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].square() } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].erf() } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].gelu() } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].gelu(approximate: .tanh) } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].pow(3) } < 1e-2)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { $0[0].pow(0) } < 1e-2)
        for p: Float in [2, -1, 0.5, -0.5, 1.7, -2.3] {
            #expect(GradCheck.maxError(pos, eps: 1e-3) { $0[0].pow(p) } < 1e-2, "pow \(p)")
        }
        #expect(GradCheck.maxError(pos, eps: 1e-3) { $0[0].rsqrt() } < 1e-2)
    }

    @Test func kinkedOpGradients() {
        let x = [KinkFree.inputs([37])]
        #expect(GradCheck.maxError(x, eps: 1e-3) { $0[0].abs() } < 1e-2)
        #expect(GradCheck.maxError(x, eps: 1e-3) { $0[0].relu() } < 1e-2)
        #expect(GradCheck.maxError(x, eps: 1e-3) { $0[0].leakyRelu(0.2) } < 1e-2)
        #expect(GradCheck.maxError(x, eps: 1e-3) { $0[0].leakyRelu() } < 1e-2)
        let c = [KinkFree.inputs([37], avoiding: [-0.4, 0.3])]
        #expect(GradCheck.maxError(c, eps: 1e-3) { $0[0].clamped(min: -0.4, max: 0.3) } < 1e-2)
        #expect(GradCheck.maxError(c, eps: 1e-3) { $0[0].clamped(min: nil, max: 0.3) } < 1e-2)
        #expect(GradCheck.maxError(c, eps: 1e-3) { $0[0].clamped(min: -0.4, max: nil) } < 1e-2)
    }

    @Test func secondOrder() {
        let xs = GradCheck.inputs([[37]], low: -2, high: 2)
        let pos = GradCheck.inputs([[37]], low: 0.3, high: 2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[0].square() } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[0].pow(3) } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(pos, eps: 1e-3) { $0[0].pow(-1.5) } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(pos, eps: 1e-3) { $0[0].pow(0.5) } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(pos, eps: 1e-3) { $0[0].rsqrt() } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[0].erf() } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[0].gelu() } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { $0[0].gelu(approximate: .tanh) } < 2e-2)
        // Piecewise-linear ops have a zero second derivative; multiplying by x makes the
        // first-order graph run through their composite backward with a g that depends on x.
        let k = [KinkFree.inputs([37])]
        #expect(GradCheck.maxSecondOrderError(k, eps: 1e-3) { $0[0].abs() * $0[0] } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(k, eps: 1e-3) { $0[0].relu() * $0[0] } < 2e-2)
        #expect(GradCheck.maxSecondOrderError(k, eps: 1e-3) { $0[0].leakyRelu(0.2) * $0[0] } < 2e-2)
        let c = [KinkFree.inputs([37], avoiding: [-0.4, 0.3])]
        #expect(GradCheck.maxSecondOrderError(c, eps: 1e-3) { $0[0].clamped(min: -0.4, max: 0.3).square() } < 2e-2)
    }

    @Test func fusedAndCompositeBackwardsAgree() {
        // 1037 elements: full SIMD blocks plus a 13-lane tail.
        let x = [KinkFree.inputs([1037], low: -3, high: 3)]
        let pos = GradCheck.inputs([[1037]], low: 0.2, high: 3)
        let ops: [(String, (Tensor) -> Tensor)] = [
            ("square", { $0.square() }), ("pow3", { $0.pow(3) }), ("abs", { $0.abs() }),
            ("clamp", { $0.clamped(min: -1, max: 2) }), ("relu", { $0.relu() }), ("lrelu", { $0.leakyRelu(0.2) }),
            ("gelu", { $0.gelu() }), ("gelu_tanh", { $0.gelu(approximate: .tanh) }), ("erf", { $0.erf() }),
        ]
        for (name, f) in ops { #expect(KinkFree.fusedVsComposite(x) { f($0[0]) } < 1e-5, "\(name)") }
        #expect(KinkFree.fusedVsComposite(pos) { $0[0].rsqrt() } < 1e-5)
        #expect(KinkFree.fusedVsComposite(pos) { $0[0].pow(1.7) } < 1e-5)
    }

    @Test func dropoutKeepsFractionAndMean() {
        let p: Float = 0.3
        let x = Tensor.ones([100_003])
        var stream = RandomStream(seed: 7, purpose: .dropout)
        let start = stream
        let y = x.dropout(p: p, stream: &stream).array
        #expect(stream != start)
        let kept = y.filter { $0 != 0 }
        #expect(kept.allSatisfy { Swift.abs($0 - 1 / (1 - p)) < 1e-6 })
        let fraction = Double(kept.count) / Double(y.count)
        #expect(Swift.abs(fraction - 0.7) < 0.01)
        let mean = y.reduce(0.0) { $0 + Double($1) } / Double(y.count)
        #expect(Swift.abs(mean - 1) < 0.02)
        // The same stream state gives the same mask; the advanced stream a different one.
        var replay = start
        #expect(x.dropout(p: p, stream: &replay).array == y)
        #expect(replay == stream)
        #expect(x.dropout(p: p, stream: &stream).array != y)
    }

    @Test func dropoutEdgesAndGradient() {
        let x = GradCheck.inputs([[37]])[0]
        var s = RandomStream(key: 11)
        let saved = s
        #expect(x.dropout(p: 0, stream: &s) === x)
        #expect(s == saved)
        #expect(x.dropout(p: 1, stream: &s).array.allSatisfy { $0 == 0 })
        // The gradient is the scaled mask: a fresh stream per call makes f deterministic.
        #expect(GradCheck.maxError([x]) { xs in
            var s = RandomStream(key: 12)
            return xs[0].dropout(p: 0.4, stream: &s)
        } < 1e-2)
    }
}
