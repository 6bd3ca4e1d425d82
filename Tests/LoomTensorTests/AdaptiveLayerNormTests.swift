import Testing
import LoomTensor

/// The fused adaLN passes against the composite ops they replace (LayerNorm without
/// parameters, broadcast products and sums, each tested on its own), first and second order,
/// and bitwise the same at one and two threads.
@Suite struct AdaptiveLayerNormTests {
    private struct Inputs {
        let x: Tensor, shift: Tensor, scale: Tensor, y: Tensor, weight: Tensor
        init() {
            var s = RandomStream(key: 21)
            x = Tensor.uniform([5, 7, 40], low: -2, high: 3, stream: &s)       // D = 40: lanes and a tail
            shift = Tensor.uniform([5, 40], low: -1, high: 1, stream: &s)
            scale = Tensor.uniform([5, 40], low: -1, high: 1, stream: &s)
            y = Tensor.uniform([5, 7, 40], low: -1, high: 1, stream: &s)
            weight = Tensor.uniform([5, 7, 40], low: -1, high: 1, stream: &s)   // a loss Σ weight·out
            for t in [x, shift, scale, y] { t.requiresGrad = true }
        }
    }

    /// Outputs and gradients of Σ weight·f(inputs) with respect to x, shift, scale, y.
    private func run(fused: Bool, createGraph: Bool = false) -> [[Float]] {
        let a = Inputs()
        let (n, d) = (5, 40)
        let normed = fused ? modulatedLayerNorm(a.x, shift: a.shift, scale: a.scale, eps: 1e-6)
            : layerNorm(a.x, weight: nil, bias: nil, eps: 1e-6) * (a.scale.reshaped([n, 1, d]) + 1) + a.shift.reshaped([n, 1, d])
        let out = fused ? gatedResidual(normed, gate: a.scale, a.y) : normed + a.scale.reshaped([n, 1, d]) * a.y
        let loss = (out * a.weight).sum()
        let grads = grad(of: loss, wrt: [a.x, a.shift, a.scale, a.y], createGraph: createGraph)
        var result = [out.array] + grads.map(\.array)
        if createGraph {
            // Second order: d/dx of Σ (dL/dshift)² goes through the backward itself.
            result.append(grad(of: (grads[1] * grads[1]).sum() + (grads[2] * grads[0].sum()).sum(), wrt: [a.x])[0].array)
        }
        return result
    }

    @Test func fusedPassesMatchTheCompositeOps() {
        let fused = run(fused: true), composite = run(fused: false)
        for (i, (f, c)) in zip(fused, composite).enumerated() {
            let worst = zip(f, c).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
            #expect(f.count == c.count && worst < 2e-5, "result \(i): worst relative difference \(worst)")
        }
    }

    @Test func secondOrderMatchesTheCompositeOps() {
        let fused = run(fused: true, createGraph: true), composite = run(fused: false, createGraph: true)
        for (i, (f, c)) in zip(fused, composite).enumerated() {
            let worst = zip(f, c).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
            #expect(f.count == c.count && worst < 1e-4, "result \(i): worst relative difference \(worst)")
        }
    }

    @Test func oneAndTwoThreadsAgreeBitwise() {
        let one = Parallel.withThreads(1) { run(fused: true) }, two = Parallel.withThreads(2) { run(fused: true) }
        #expect(one == two)
    }
}
