import Testing
import LoomTensor

/// Shared gradient-checking tools for every op test.
enum GradCheck {
    /// Random inputs in [low, high) from a fixed stream, requiring gradients.
    static func inputs(_ shapes: [[Int]], low: Float = -1, high: Float = 1, seed: UInt64 = 1) -> [Tensor] {
        var s = RandomStream(key: seed)
        return shapes.map {
            let t = Tensor.uniform($0, low: low, high: high, stream: &s)
            t.requiresGrad = true
            return t
        }
    }

    /// Largest error of autograd's gradient of `⟨f(inputs), w⟩` (w a fixed random tensor)
    /// against central differences, per input relative to that input's largest numeric
    /// gradient (at least 1e-2): a gradient that is off by a factor (halved, say) fails
    /// whatever its size, while single near-zero entries do not blow the measure up.
    /// Differences are taken in float32, so use eps around 1e-2…1e-3 and compare with
    /// tolerances around 1e-2.
    static func maxError(_ inputs: [Tensor], eps: Float = 1e-2, _ f: @escaping ([Tensor]) -> Tensor) -> Float {
        let y0 = f(inputs)
        var ws = RandomStream(key: 99)
        let w = Tensor.uniform(y0.shape, low: 0.5, high: 1.5, stream: &ws)
        let objective = { (xs: [Tensor]) -> Tensor in (f(xs) * w).sum() }
        for x in inputs { x.grad = nil }
        objective(inputs).backward()
        var worst: Float = 0
        for x in inputs {
            let analytic = x.grad?.array ?? [Float](repeating: 0, count: x.count)
            var difference: Float = 0, scale: Float = 1e-2
            for i in 0..<x.count {
                let saved = x.data[i]
                x.data[i] = saved + eps
                let up = noGrad { dot(f(inputs), w) }
                x.data[i] = saved - eps
                let down = noGrad { dot(f(inputs), w) }
                x.data[i] = saved
                let numeric = Float((up - down) / Double(2 * eps))
                difference = max(difference, abs(numeric - analytic[i]))
                scale = max(scale, abs(numeric))
            }
            worst = max(worst, difference / scale)
        }
        return worst
    }

    /// ⟨y, w⟩ accumulated in double precision, so that the finite differences see only
    /// the rounding of the outputs that actually changed.
    static func dot(_ y: Tensor, _ w: Tensor) -> Double {
        var acc = 0.0
        for i in 0..<y.count { acc += Double(y.data[i]) * Double(w.data[i]) }
        return acc
    }

    /// Checks the second order: the gradient of ⟨∂⟨f(x), w⟩/∂x₀, v⟩ (built with
    /// `createGraph`) with respect to every input, against central differences of it.
    static func maxSecondOrderError(_ inputs: [Tensor], eps: Float = 1e-2, _ f: @escaping ([Tensor]) -> Tensor) -> Float {
        let y0 = noGrad { f(inputs) }
        var ws = RandomStream(key: 77)
        let w = Tensor.uniform(y0.shape, low: 0.5, high: 1.5, stream: &ws)
        let v = Tensor.uniform(inputs[0].shape, low: -1, high: 1, stream: &ws)
        return maxError(inputs, eps: eps) { xs in
            // The finite-difference evaluations run under noGrad; the first order needs the tape.
            GradMode.with(enabled: true) {
                let g = grad(of: (f(xs) * w).sum(), wrt: [xs[0]], createGraph: true)[0]
                return g * v
            }
        }
    }
}

/// The checker itself: a gradient that is right passes, the same gradient halved fails even
/// where it is small (|∂| ≈ 0.02), and so does one that is wrong in a single element.
@Suite struct GradCheckSelfTests {
    /// x ↦ 0.02·x², with its gradient scaled by `factor` (1 = correct) and one element
    /// shifted by `shift`.
    static func scaledSquare(_ x: Tensor, factor: Float, shift: Float = 0) -> Tensor {
        let y = noGrad { x * x * Float(0.02) }
        return y.recorded("test_scaled_square", [x]) { g, _ in
            let d = noGrad { g * x * Float(0.04 * factor) }
            d.data[0] += shift
            return [d]
        }
    }

    @Test func wrongGradientsFail() {
        let xs = GradCheck.inputs([[3, 4]])
        #expect(GradCheck.maxError(xs) { Self.scaledSquare($0[0], factor: 1) } < 1e-2)
        #expect(GradCheck.maxError(xs) { Self.scaledSquare($0[0], factor: 0.5) } > 0.2)
        #expect(GradCheck.maxError(xs) { Self.scaledSquare($0[0], factor: 1, shift: 0.01) } > 0.1)
    }
}
