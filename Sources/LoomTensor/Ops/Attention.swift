import Foundation

/// Scaled dot-product attention, softmax(scale · Q Kᵀ) V, per batch and head. The forward
/// pass keeps the attention weights P for a fused first-order backward (five GEMMs and one
/// row pass per head); a graph-building backward is written with matmul and softmax ops
/// instead so that gradient penalties can differentiate it again.

/// Attention of `query` [B, H, Tq, D] over `key` [B, H, Tk, D] and `value` [B, H, Tk, Dv]
/// (any equal leading axes; Tk may differ from Tq) → [B, H, Tq, Dv]; `scale` defaults to 1/√D.
public func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, scale: Float? = nil) -> Tensor {
    let r = query.rank
    precondition(r >= 2 && key.rank == r && value.rank == r,
                 "attention: query \(query.shape), key \(key.shape), value \(value.shape) must have equal rank ≥ 2")
    let batchShape = Array(query.shape.dropLast(2))
    precondition(Array(key.shape.dropLast(2)) == batchShape && Array(value.shape.dropLast(2)) == batchShape,
                 "attention: leading axes differ in \(query.shape), \(key.shape), \(value.shape)")
    let tq = query.shape[r - 2], d = query.shape[r - 1], tk = key.shape[r - 2], dv = value.shape[r - 1]
    precondition(key.shape[r - 1] == d && value.shape[r - 2] == tk,
                 "attention: key \(key.shape) and value \(value.shape) do not fit query \(query.shape)")
    let s = scale ?? 1 / Float(d).squareRoot()
    let batches = batchShape.reduce(1, *)
    let weights = Tensor(uninitialized: batchShape + [tq, tk])
    let out = Tensor(uninitialized: batchShape + [tq, dv])
    let pq = query.data, pk = key.data, pv = value.data, pp = weights.data, po = out.data
    // One head at a time, so its score matrix is still in cache for the softmax and ·V;
    // heads spread over the threads (each head's GEMMs are too small for BLAS to split).
    Parallel.forRange(batches, grain: headGrain(tq * tk * (d + dv))) { range in
        for b in range {
            let p = pp + b * tq * tk
            rowMajorSgemm(transA: false, transB: true, m: tq, n: tk, k: d, alpha: s, a: pq + b * tq * d, lda: d,
                          b: pk + b * tk * d, ldb: d, beta: 0, c: p, ldc: tk)
            for i in 0..<tq { SoftmaxKernels.forwardRow(p + i * tk, p + i * tk, tk, log: false) }
            rowMajorSgemm(transA: false, transB: false, m: tq, n: dv, k: tk, alpha: 1, a: p, lda: tk,
                          b: pv + b * tk * dv, ldb: dv, beta: 0, c: po + b * tq * dv, ldc: dv)
        }
    }
    return out.recorded("attention", [query, key, value]) { g, needs in
        if GradMode.isEnabled {
            // Composite: P recomputed as an op so that it depends on Q and K on the tape.
            let p = (matmul(query, key, transposeB: true) * s).softmax(axis: -1)
            var dQ: Tensor?, dK: Tensor?
            if needs[0] || needs[1] {
                let dP = matmul(g, value, transposeB: true)
                let dS = p * (dP - (dP * p).summed(to: batchShape + [tq, 1]))
                if needs[0] { dQ = matmul(dS, key) * s }
                if needs[1] { dK = matmul(dS, query, transposeA: true) * s }
            }
            return [dQ, dK, needs[2] ? matmul(p, g, transposeA: true) : nil]
        }
        return attentionBackward(g, query, key, value, weights: weights, scale: s, needs: needs)
    }
}

/// The fused first-order backward: dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)),
/// dQ = scale · dS K, dK = scale · dSᵀ Q, head by head with one dS buffer per thread.
func attentionBackward(_ g: Tensor, _ query: Tensor, _ key: Tensor, _ value: Tensor, weights: Tensor,
                       scale s: Float, needs: [Bool]) -> [Tensor?] {
    let r = query.rank
    let tq = query.shape[r - 2], d = query.shape[r - 1], tk = key.shape[r - 2], dv = value.shape[r - 1]
    let batches = query.shape.dropLast(2).reduce(1, *)
    let dQ = needs[0] ? Tensor(uninitialized: query.shape) : nil
    let dK = needs[1] ? Tensor(uninitialized: key.shape) : nil
    let dV = needs[2] ? Tensor(uninitialized: value.shape) : nil
    let pq = query.data, pk = key.data, pv = value.data, pp = weights.data, pg = g.data
    Parallel.forRange(batches, grain: headGrain(tq * tk * (2 * d + 2 * dv))) { range in
        let scores = needs[0] || needs[1] ? Storage(count: tq * tk) : nil
        for b in range {
            let p = pp + b * tq * tk, go = pg + b * tq * dv
            if let dV {
                rowMajorSgemm(transA: true, transB: false, m: tk, n: dv, k: tq, alpha: 1, a: p, lda: tk,
                              b: go, ldb: dv, beta: 0, c: dV.data + b * tk * dv, ldc: dv)
            }
            guard let ds = scores?.data else { continue }
            rowMajorSgemm(transA: false, transB: true, m: tq, n: tk, k: dv, alpha: 1, a: go, lda: dv,
                          b: pv + b * tk * dv, ldb: dv, beta: 0, c: ds, ldc: tk)
            for i in 0..<tq { SoftmaxKernels.backwardRow(p + i * tk, ds + i * tk, ds + i * tk, tk, log: false) }
            if let dQ {
                rowMajorSgemm(transA: false, transB: false, m: tq, n: d, k: tk, alpha: s, a: ds, lda: tk,
                              b: pk + b * tk * d, ldb: d, beta: 0, c: dQ.data + b * tq * d, ldc: d)
            }
            if let dK {
                rowMajorSgemm(transA: true, transB: false, m: tk, n: d, k: tq, alpha: s, a: ds, lda: tk,
                              b: pq + b * tq * d, ldb: d, beta: 0, c: dK.data + b * tk * d, ldc: d)
            }
        }
    }
    return [dQ, dK, dV]
}

/// Heads per thread chunk: enough multiply-adds (about 2 M) that a chunk outweighs the
/// cost of handing it to another thread.
private func headGrain(_ flopsPerHead: Int) -> Int { max(1, (1 << 21) / max(1, flopsPerHead)) }
