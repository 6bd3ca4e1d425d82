/// Convolutions whose kernel covers the whole unpadded src and so leave one dst pixel: a
/// DCGAN generator's first layer (z as a 1×1 image → 4×4 by a transposed convolution, which
/// is this pass backward-data) and a discriminator's last layer. Each pass is then one GEMM
/// over the batch with K = C·kh·kw. oneDNN runs these shapes at 18–36 GFLOP/s (a GEMM of
/// W3's 100 → 256×4×4 layer reaches sgemm's speed).
///
/// The weights stay in PyTorch's [O, C, kh, kw]; instead each image's [kh·kw, C] pixels are
/// transposed to [C, kh·kw] (4096 values for W3: cheaper than regrouping 409,600 weights).
enum FullWindowConv {
    /// Whether the kernel covers the whole src with no padding (one dst pixel).
    static func handles(_ g: ConvGeometry) -> Bool {
        g.padding == 0 && g.dstH == 1 && g.dstW == 1 && g.kh == g.srcH && g.kw == g.srcW
    }

    /// Row-major C[m, n] = op(A)·op(B) + beta·C, single-threaded (`sgemmCall`).
    @inline(__always)
    private static func gemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                             _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                             beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        sgemmCall(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb,
                  beta: beta, c: c, ldc: ldc)
    }

    /// `images` NHWC images [taps, C] → [C, taps] (the weights' (c, i, j) order), or back.
    private static func transpose(_ from: UnsafePointer<Float>, _ to: UnsafeMutablePointer<Float>, images: Int,
                                  taps: Int, channels: Int, toChannelMajor: Bool) {
        let size = taps * channels
        for n in 0..<images {
            let s = from + n * size, d = to + n * size
            if toChannelMajor {
                for t in 0..<taps { for c in 0..<channels { d[c * taps + t] = s[t * channels + c] } }
            } else {
                for c in 0..<channels { for t in 0..<taps { d[t * channels + c] = s[c * taps + t] } }
            }
        }
    }

    /// dst[n, o] = Σ_k src[n, k]·W[o, k] (+ bias[o]), k over (c, i, j). Images are spread
    /// over the threads; each dst row is one GEMM row, whatever the split.
    static func forward(_ g: ConvGeometry, src: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(handles(g))
        let taps = g.kh * g.kw, k = taps * g.srcC, o = g.dstC
        let out = Tensor(uninitialized: g.dstShape)
        let scratch = Storage(count: g.batch * k)
        let ps = src.data, pt = scratch.data, pd = out.data, pw = weight.data, pb = bias?.data
        Parallel.forRange(g.batch, grain: 8) { r in
            transpose(ps + r.lowerBound * k, pt + r.lowerBound * k, images: r.count, taps: taps, channels: g.srcC, toChannelMajor: true)
            if let pb { for n in r { (pd + n * o).update(from: pb, count: o) } }
            gemm(false, true, r.count, o, k, pt + r.lowerBound * k, k, pw, k, beta: pb == nil ? 0 : 1, pd + r.lowerBound * o, o)
        }
        return out
    }

    /// diff_src[n, k] = Σ_o diff_dst[n, o]·W[o, k], back in NHWC.
    static func backwardData(_ g: ConvGeometry, diffDst: Tensor, weight: Tensor) -> Tensor {
        precondition(handles(g))
        let taps = g.kh * g.kw, k = taps * g.srcC, o = g.dstC
        let out = Tensor(uninitialized: g.srcShape)
        let scratch = Storage(count: g.batch * k)
        let pg = diffDst.data, pt = scratch.data, pd = out.data, pw = weight.data
        Parallel.forRange(g.batch, grain: 8) { r in
            gemm(false, false, r.count, k, o, pg + r.lowerBound * o, o, pw, k, beta: 0, pt + r.lowerBound * k, k)
            transpose(pt + r.lowerBound * k, pd + r.lowerBound * k, images: r.count, taps: taps, channels: g.srcC, toChannelMajor: false)
        }
        return out
    }

    /// One chunk of `ConvPrimitive.backwardWeights`: diff_W[o, k] = Σ_n diff_dst[n, o]·src[n, k]
    /// over the chunk's images (and diff_bias[o] = Σ_n diff_dst[n, o]), single-threaded.
    static func backwardWeights(_ g: ConvGeometry, src: UnsafeMutablePointer<Float>, diffDst: UnsafeMutablePointer<Float>,
                                diffWeights: UnsafeMutablePointer<Float>, diffBias: UnsafeMutablePointer<Float>?) {
        let taps = g.kh * g.kw, k = taps * g.srcC, o = g.dstC
        let scratch = Storage(count: g.batch * k)
        transpose(src, scratch.data, images: g.batch, taps: taps, channels: g.srcC, toChannelMajor: true)
        gemm(true, false, o, k, g.batch, diffDst, o, scratch.data, k, beta: 0, diffWeights, k)
        if let diffBias { sumRows(diffDst, rows: g.batch, width: o, into: diffBias) }
    }
}
