import CDNNL

/// Matrix products through oneDNN's sgemm: `matmul` (2-D and batched with broadcast batch
/// axes) and `linear` (PyTorch's x·Wᵀ + b as one GEMM over all leading axes). Backward passes
/// are themselves matmuls, so second-order gradients come for free.

/// Row-major C[m, n] = alpha · op(A) · op(B) + beta · C with leading dimensions given.
///
/// Each sgemm runs single-threaded; with more than one Loom thread a
/// large product is cut into blocks of C's rows (or columns, when there are more of them),
/// one per thread, each its own sgemm. Every element of C still sums over all of K inside one
/// call, so the split changes no reduction.
func rowMajorSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                   a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                   beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    let parts = min(Parallel.threads, max(m, n) / 16)
    guard parts > 1, m * n * k >= 1 << 20 else {
        return sgemmCall(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                         b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
    Parallel.forRange(parts, grain: 1) { range in
        for p in range {
            if m >= n {  // rows of C: rows of op(A)
                let i0 = m * p / parts, rows = m * (p + 1) / parts - i0
                sgemmCall(transA: transA, transB: transB, m: rows, n: n, k: k, alpha: alpha,
                          a: a + (transA ? i0 : i0 * lda), lda: lda, b: b, ldb: ldb, beta: beta, c: c + i0 * ldc, ldc: ldc)
            } else {     // columns of C: columns of op(B)
                let j0 = n * p / parts, cols = n * (p + 1) / parts - j0
                sgemmCall(transA: transA, transB: transB, m: m, n: cols, k: k, alpha: alpha, a: a, lda: lda,
                          b: b + (transB ? j0 * ldb : j0), ldb: ldb, beta: beta, c: c + j0, ldc: ldc)
            }
        }
    }
}

/// One single-threaded sgemm (row-major), with the empty-K case done by hand. oneDNN's
/// sgemm, not OpenBLAS's: on DiT's shapes (K = 192–768 against M = 4096 tokens, and the
/// weight gradients with K = 4096) it ran 10–40 % faster, measured alternately on this
/// machine; like OpenBLAS's, its rows (or columns) do not change when a product is split
/// (checked bitwise on 300 random split shapes, and by OpsThreadCountTests).
@inline(__always)
func sgemmCall(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
               beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS leaves C untouched or rejects lda = 0: the empty sum is done by hand.
        for i in 0..<m { let row = c + i * ldc; for j in 0..<n { row[j] *= beta } }
        if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    let status = DNNL.withThreads(1) {
        dnnl_sgemm(CChar(UInt8(ascii: transA ? "T" : "N")), CChar(UInt8(ascii: transB ? "T" : "N")),
                   dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha, a, dnnl_dim_t(lda), b, dnnl_dim_t(ldb),
                   beta, c, dnnl_dim_t(ldc))
    }
    DNNL.check(status, "sgemm \(m)×\(n)×\(k)")
}

/// The matrix product op(a) · op(b) over the last two axes, where op transposes when asked;
/// leading (batch) axes broadcast like NumPy. a: [..., M, K] (or [..., K, M] with
/// `transposeA`), b: [..., K, N] (or [..., N, K] with `transposeB`) → [..., M, N].
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul needs at least 2-D operands, got \(a.shape) and \(b.shape)")
    let ar = a.shape[a.rank - 2], ac = a.shape[a.rank - 1]
    let br = b.shape[b.rank - 2], bc = b.shape[b.rank - 1]
    let m = transposeA ? ac : ar, k = transposeA ? ar : ac
    let n = transposeB ? br : bc, kb = transposeB ? bc : br
    precondition(k == kb, "matmul: inner extents differ in \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
    let aBatch = Array(a.shape.dropLast(2)), bBatch = Array(b.shape.dropLast(2))
    guard let batch = broadcastShape(aBatch, bBatch) else {
        preconditionFailure("matmul: batch axes \(aBatch) and \(bBatch) do not broadcast")
    }
    let out = Tensor(uninitialized: batch + [m, n])
    let batchCount = batch.reduce(1, *)
    let pa = a.data, pb = b.data, po = out.data
    if batchCount == 1 || (!transposeA && bBatch.reduce(1, *) == 1 && aBatch.reduce(1, *) == batchCount) {
        // One GEMM: a's batch rows stack into M when b is shared.
        rowMajorSgemm(transA: transposeA, transB: transposeB, m: batchCount * m, n: n, k: k, alpha: 1,
                      a: pa, lda: ac, b: pb, ldb: bc, beta: 0, c: po, ldc: n)
    } else {
        let sa = broadcastStrides(aBatch, rank: batch.count, outShape: batch).map { $0 * ar * ac }
        let sb = broadcastStrides(bBatch, rank: batch.count, outShape: batch).map { $0 * br * bc }
        var w = OffsetOdometer(extents: batch, strides0: sa, strides1: sb, start: 0)
        for i in 0..<batchCount {
            rowMajorSgemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k, alpha: 1,
                          a: pa + w.offset0, lda: ac, b: pb + w.offset1, ldb: bc, beta: 0, c: po + i * m * n, ldc: n)
            w.next()
        }
    }
    return out.recorded("matmul", [a, b]) { g, needs in
        // The four transpose cases of dA and dB, each another matmul; summed over broadcast batches.
        var da: Tensor?, db: Tensor?
        if needs[0] {
            switch (transposeA, transposeB) {
            case (false, false): da = matmul(g, b, transposeB: true)
            case (false, true): da = matmul(g, b)
            case (true, false): da = matmul(b, g, transposeB: true)
            case (true, true): da = matmul(b, g, transposeA: true, transposeB: true)
            }
            da = da!.summed(to: a.shape)
        }
        if needs[1] {
            switch (transposeA, transposeB) {
            case (false, false): db = matmul(a, g, transposeA: true)
            case (false, true): db = matmul(g, a, transposeA: true)
            case (true, false): db = matmul(a, g)
            case (true, true): db = matmul(g, a, transposeA: true, transposeB: true)
            }
            db = db!.summed(to: b.shape)
        }
        return [da, db]
    }
}

/// PyTorch's linear layer: x [..., in] · weightᵀ (weight [out, in]) + bias [out] → [..., out],
/// as one GEMM over all leading axes with the bias preloaded into the output.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    precondition(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
    let outFeatures = weight.shape[0], inFeatures = weight.shape[1]
    precondition(x.rank >= 1 && x.shape.last == inFeatures, "linear: input \(x.shape) does not end in \(inFeatures)")
    if let bias { precondition(bias.shape == [outFeatures], "linear: bias \(bias.shape) is not [\(outFeatures)]") }
    let rows = x.count / Swift.max(1, inFeatures)
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outFeatures])
    let po = out.data
    if let bias {
        let pb = bias.data
        Parallel.forRange(rows, grain: Swift.max(1, (1 << 14) / Swift.max(1, outFeatures))) { r in
            for i in r { (po + i * outFeatures).update(from: pb, count: outFeatures) }
        }
    }
    rowMajorSgemm(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures, alpha: 1,
                  a: x.data, lda: inFeatures, b: weight.data, ldb: inFeatures,
                  beta: bias == nil ? 0 : 1, c: po, ldc: outFeatures)
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    let xShape = x.shape
    return out.recorded("linear", inputs) { g, needs in
        let g2 = g.reshaped([rows, outFeatures])
        return [
            needs[0] ? matmul(g2, weight).reshaped(xShape) : nil,                           // dx = g·W
            needs[1] ? matmul(g2, x.reshaped([rows, inFeatures]), transposeA: true) : nil,  // dW = gᵀ·x
        ] + (needs.count > 2 ? [needs[2] ? g2.summed(to: [outFeatures]) : nil] : [])        // db = Σ g
    }
}
