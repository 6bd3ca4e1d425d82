import Testing
import Foundation
import LoomTensor

@Suite struct AttentionTests {
    /// softmax(scale·qkᵀ)v head by head with plain loops in double precision.
    private func naiveAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Double) -> [Double] {
        let heads = q.shape[0] * q.shape[1], tq = q.shape[2], d = q.shape[3], tk = k.shape[2], dv = v.shape[3]
        var out = [Double](repeating: 0, count: heads * tq * dv)
        for h in 0..<heads {
            for i in 0..<tq {
                var scores = [Double](repeating: 0, count: tk)
                for j in 0..<tk {
                    for c in 0..<d { scores[j] += Double(q.data[(h * tq + i) * d + c]) * Double(k.data[(h * tk + j) * d + c]) }
                    scores[j] *= scale
                }
                let m = scores.max()!
                let e = scores.map { Foundation.exp($0 - m) }
                let z = e.reduce(0, +)
                for j in 0..<tk {
                    for c in 0..<dv { out[(h * tq + i) * dv + c] += e[j] / z * Double(v.data[(h * tk + j) * dv + c]) }
                }
            }
        }
        return out
    }

    @Test func matchesPerHeadLoop() {
        // Cross-attention: 3 queries over 5 keys.
        let xs = GradCheck.inputs([[2, 3, 3, 4], [2, 3, 5, 4], [2, 3, 5, 4]], low: -2, high: 2)
        let y = scaledDotProductAttention(query: xs[0], key: xs[1], value: xs[2])
        #expect(y.shape == [2, 3, 3, 4])
        let expected = naiveAttention(xs[0], xs[1], xs[2], scale: 0.5)
        #expect(zip(y.array, expected).allSatisfy { abs(Double($0) - $1) < 1e-5 })
        let z = scaledDotProductAttention(query: xs[0], key: xs[1], value: xs[2], scale: 1.7)
        let expectedZ = naiveAttention(xs[0], xs[1], xs[2], scale: 1.7)
        #expect(zip(z.array, expectedZ).allSatisfy { abs(Double($0) - $1) < 1e-5 })
    }

    @Test func gradients() {
        let xs = GradCheck.inputs([[1, 2, 3, 4], [1, 2, 5, 4], [1, 2, 5, 4]], low: -1, high: 1)
        #expect(GradCheck.maxError(xs, eps: 1e-3) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2]) } < 1e-2)
        // Value of a different width, and self-attention.
        let ys = GradCheck.inputs([[2, 1, 4, 3], [2, 1, 4, 3], [2, 1, 4, 5]], low: -1, high: 1)
        #expect(GradCheck.maxError(ys, eps: 1e-3) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], scale: 0.8) } < 1e-2)
    }

    @Test func secondOrder() {
        let xs = GradCheck.inputs([[1, 2, 3, 4], [1, 2, 5, 4], [1, 2, 5, 4]], low: -1, high: 1)
        let f = { (t: [Tensor]) in scaledDotProductAttention(query: t[0], key: t[1], value: t[2]) }
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3, f) < 2e-2)
        #expect(GradCheck.maxSecondOrderError([xs[1], xs[0], xs[2]], eps: 1e-3) { f([$0[1], $0[0], $0[2]]) } < 2e-2)
        #expect(GradCheck.maxSecondOrderError([xs[2], xs[0], xs[1]], eps: 1e-3) { f([$0[1], $0[2], $0[0]]) } < 2e-2)
    }

    @Test func fusedBackwardEqualsComposite() {
        let xs = GradCheck.inputs([[2, 2, 7, 8], [2, 2, 9, 8], [2, 2, 9, 8]], low: -1, high: 1)
        var s = RandomStream(key: 3)
        let g = Tensor.uniform([2, 2, 7, 8], low: -1, high: 1, stream: &s)
        let f = { scaledDotProductAttention(query: xs[0], key: xs[1], value: xs[2]) }
        let fused = grad(of: f(), wrt: xs, gradOutput: g)
        let composite = grad(of: f(), wrt: xs, gradOutput: g, createGraph: true)
        for (a, b) in zip(fused, composite) {
            #expect(zip(a.array, b.array).allSatisfy { abs($0 - $1) < 1e-5 })
        }
        // Only some inputs wanted: the fused path skips the rest.
        let onlyValue = grad(of: f(), wrt: [xs[2]], gradOutput: g)[0]
        #expect(onlyValue.array == fused[2].array)
    }
}

/// `packedSelfAttention` against the reshape/permute/chunk route DiT used before (itself
/// tested against direct loops above): forward, first and second order, 1 and 2 threads.
@Suite struct PackedSelfAttentionTests {
    private func run(packed: Bool, createGraph: Bool = false) -> [[Float]] {
        var s = RandomStream(key: 8)
        let (n, t, heads, hd) = (3, 10, 3, 8), d = heads * hd
        let qkv = Tensor.uniform([n, t, 3 * d], low: -1, high: 1, stream: &s)
        let weight = Tensor.uniform([n, t, d], low: -1, high: 1, stream: &s)
        qkv.requiresGrad = true
        let y: Tensor
        if packed {
            y = packedSelfAttention(qkv, heads: heads)
        } else {
            let parts = qkv.reshaped([n, t, 3, heads, hd]).permuted([2, 0, 3, 1, 4]).chunked(3, axis: 0)
            let (q, k, v) = (parts[0].reshaped([n, heads, t, hd]), parts[1].reshaped([n, heads, t, hd]),
                             parts[2].reshaped([n, heads, t, hd]))
            y = scaledDotProductAttention(query: q, key: k, value: v).permuted([0, 2, 1, 3]).reshaped([n, t, d])
        }
        let g = grad(of: (y * weight).sum(), wrt: [qkv], createGraph: createGraph)[0]
        var result = [y.array, g.array]
        if createGraph { result.append(grad(of: (g * g).sum(), wrt: [qkv])[0].array) }
        return result
    }

    @Test func matchesTheUnpackedRoute() {
        for createGraph in [false, true] {
            for (i, (p, u)) in zip(run(packed: true, createGraph: createGraph), run(packed: false, createGraph: createGraph)).enumerated() {
                let worst = zip(p, u).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                #expect(p.count == u.count && worst < 1e-5, "createGraph \(createGraph), result \(i): \(worst)")
            }
        }
    }

    @Test func oneAndTwoThreadsAgreeBitwise() {
        #expect(Parallel.withThreads(1) { run(packed: true) } == Parallel.withThreads(2) { run(packed: true) })
    }
}
