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
    let shape = AttentionShape(heads: batches, tq: tq, tk: tk, d: d, dv: dv, scale: s)
    let q = HeadLayout(rows: tq, ld: d), k = HeadLayout(rows: tk, ld: d), v = HeadLayout(rows: tk, ld: dv)
    let o = HeadLayout(rows: tq, ld: dv)
    let weights = Tensor(uninitialized: batchShape + [tq, tk])
    let out = Tensor(uninitialized: batchShape + [tq, dv])
    attentionForward(shape, q: (query.data, q), k: (key.data, k), v: (value.data, v), out: (out.data, o), weights: weights.data)
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
        let dQ = needs[0] ? Tensor(uninitialized: query.shape) : nil
        let dK = needs[1] ? Tensor(uninitialized: key.shape) : nil
        let dV = needs[2] ? Tensor(uninitialized: value.shape) : nil
        attentionBackward(shape, g: (g.data, o), q: (query.data, q), k: (key.data, k), v: (value.data, v),
                          weights: weights.data, dq: dQ.map { ($0.data, q) }, dk: dK.map { ($0.data, k) },
                          dv: dV.map { ($0.data, v) })
        return [dQ, dK, dV]
    }
}

/// Multi-head self-attention read straight from a packed projection `qkv` `[N, T, 3·D]`
/// (timm's layout: q, k and v of head h at columns h·hd, D + h·hd and 2D + h·hd) → `[N, T, D]`
/// with the heads side by side, ready for the output projection: DiT's attention without
/// the permutes and chunks around it. The GEMMs read and write the strided head slices.
public func packedSelfAttention(_ qkv: Tensor, heads: Int) -> Tensor {
    precondition(qkv.rank == 3 && heads > 0 && qkv.shape[2] % (3 * heads) == 0,
                 "packedSelfAttention: qkv \(qkv.shape) must be [N, T, 3·D] with D divisible by \(heads) heads")
    let (n, t, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3), hd = d / heads
    let shape = AttentionShape(heads: n * heads, tq: t, tk: t, d: hd, dv: hd, scale: 1 / Float(hd).squareRoot())
    // Head b = (sample b / heads, head b % heads).
    func packed(_ part: Int) -> HeadLayout {
        HeadLayout(ld: 3 * d) { b in (b / heads) * t * 3 * d + part * d + (b % heads) * hd }
    }
    let o = HeadLayout(ld: d) { b in (b / heads) * t * d + (b % heads) * hd }
    let weights = Tensor(uninitialized: [n * heads, t, t])
    let out = Tensor(uninitialized: [n, t, d])
    attentionForward(shape, q: (qkv.data, packed(0)), k: (qkv.data, packed(1)), v: (qkv.data, packed(2)),
                     out: (out.data, o), weights: weights.data)
    return out.recorded("attention", [qkv]) { g, _ in
        if GradMode.isEnabled {
            // Composite (second order): the same attention through recorded ops.
            let parts = qkv.reshaped([n, t, 3, heads, hd]).permuted([2, 0, 3, 1, 4]).chunked(3, axis: 0)
            let (q, k, v) = (parts[0].reshaped([n, heads, t, hd]), parts[1].reshaped([n, heads, t, hd]),
                             parts[2].reshaped([n, heads, t, hd]))
            let y = scaledDotProductAttention(query: q, key: k, value: v).permuted([0, 2, 1, 3]).reshaped([n, t, d])
            return grad(of: y, wrt: [qkv], gradOutput: g, createGraph: true)
        }
        let dqkv = Tensor(uninitialized: qkv.shape)
        attentionBackward(shape, g: (g.data, o), q: (qkv.data, packed(0)), k: (qkv.data, packed(1)),
                          v: (qkv.data, packed(2)), weights: weights.data, dq: (dqkv.data, packed(0)),
                          dk: (dqkv.data, packed(1)), dv: (dqkv.data, packed(2)))
        return [dqkv]
    }
}

/// Sizes of one attention: `heads` independent heads (batch × heads), each Tq × Tk scores.
struct AttentionShape {
    let heads: Int, tq: Int, tk: Int, d: Int, dv: Int, scale: Float
}

/// Where head b's matrix starts in its buffer and its leading dimension (row stride).
struct HeadLayout {
    let ld: Int
    let offset: (Int) -> Int
    init(ld: Int, offset: @escaping (Int) -> Int) { self.ld = ld; self.offset = offset }
    /// Contiguous heads of `rows` × `ld` each.
    init(rows: Int, ld: Int) { self.init(ld: ld) { b in b * rows * ld } }
}

typealias HeadMatrix = (base: UnsafeMutablePointer<Float>, layout: HeadLayout)

/// P = softmax(scale · Q Kᵀ) kept in `weights`, O = P V. One head at a time, so its score
/// matrix is still in cache for the softmax and ·V; heads spread over the threads (each
/// head's GEMMs are too small for BLAS to split).
func attentionForward(_ a: AttentionShape, q: HeadMatrix, k: HeadMatrix, v: HeadMatrix, out: HeadMatrix,
                      weights: UnsafeMutablePointer<Float>) {
    let (tq, tk) = (a.tq, a.tk)
    Parallel.forRange(a.heads, grain: headGrain(tq * tk * (a.d + a.dv))) { range in
        for b in range {
            let p = weights + b * tq * tk
            rowMajorSgemm(transA: false, transB: true, m: tq, n: tk, k: a.d, alpha: a.scale,
                          a: q.base + q.layout.offset(b), lda: q.layout.ld,
                          b: k.base + k.layout.offset(b), ldb: k.layout.ld, beta: 0, c: p, ldc: tk)
            for i in 0..<tq { SoftmaxKernels.forwardRow(p + i * tk, p + i * tk, tk, log: false) }
            rowMajorSgemm(transA: false, transB: false, m: tq, n: a.dv, k: tk, alpha: 1, a: p, lda: tk,
                          b: v.base + v.layout.offset(b), ldb: v.layout.ld, beta: 0,
                          c: out.base + out.layout.offset(b), ldc: out.layout.ld)
        }
    }
}

/// The fused first-order backward: dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)),
/// dQ = scale · dS K, dK = scale · dSᵀ Q, head by head with one dS buffer per thread.
func attentionBackward(_ a: AttentionShape, g: HeadMatrix, q: HeadMatrix, k: HeadMatrix, v: HeadMatrix,
                       weights: UnsafeMutablePointer<Float>, dq: HeadMatrix?, dk: HeadMatrix?, dv: HeadMatrix?) {
    let (tq, tk, s) = (a.tq, a.tk, a.scale)
    Parallel.forRange(a.heads, grain: headGrain(tq * tk * (2 * a.d + 2 * a.dv))) { range in
        let scores = dq != nil || dk != nil ? Storage(count: tq * tk) : nil
        for b in range {
            let p = weights + b * tq * tk, go = g.base + g.layout.offset(b), ldg = g.layout.ld
            if let dv {
                rowMajorSgemm(transA: true, transB: false, m: tk, n: a.dv, k: tq, alpha: 1, a: p, lda: tk,
                              b: go, ldb: ldg, beta: 0, c: dv.base + dv.layout.offset(b), ldc: dv.layout.ld)
            }
            guard let ds = scores?.data else { continue }
            rowMajorSgemm(transA: false, transB: true, m: tq, n: tk, k: a.dv, alpha: 1, a: go, lda: ldg,
                          b: v.base + v.layout.offset(b), ldb: v.layout.ld, beta: 0, c: ds, ldc: tk)
            for i in 0..<tq { SoftmaxKernels.backwardRow(p + i * tk, ds + i * tk, ds + i * tk, tk, log: false) }
            if let dq {
                rowMajorSgemm(transA: false, transB: false, m: tq, n: a.d, k: tk, alpha: s, a: ds, lda: tk,
                              b: k.base + k.layout.offset(b), ldb: k.layout.ld, beta: 0,
                              c: dq.base + dq.layout.offset(b), ldc: dq.layout.ld)
            }
            if let dk {
                rowMajorSgemm(transA: true, transB: false, m: tk, n: a.d, k: tq, alpha: s, a: ds, lda: tk,
                              b: q.base + q.layout.offset(b), ldb: q.layout.ld, beta: 0,
                              c: dk.base + dk.layout.offset(b), ldc: dk.layout.ld)
            }
        }
    }
}

/// Heads per thread chunk: enough multiply-adds (about 2 M) that a chunk outweighs the
/// cost of handing it to another thread.
private func headGrain(_ flopsPerHead: Int) -> Int { max(1, (1 << 21) / max(1, flopsPerHead)) }
