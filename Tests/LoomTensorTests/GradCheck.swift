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
    /// against central differences, relative to max(1, |numeric|). Differences are taken in
    /// float32, so use eps around 1e-2…1e-3 and compare with tolerances around 1e-2.
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
            for i in 0..<x.count {
                let saved = x.data[i]
                x.data[i] = saved + eps
                let up = noGrad { dot(f(inputs), w) }
                x.data[i] = saved - eps
                let down = noGrad { dot(f(inputs), w) }
                x.data[i] = saved
                let numeric = Float((up - down) / Double(2 * eps))
                worst = max(worst, abs(numeric - analytic[i]) / max(1, abs(numeric)))
            }
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
