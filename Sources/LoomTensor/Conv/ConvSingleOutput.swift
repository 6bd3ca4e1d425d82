/// Forward and backward-weights of convolutions with one output channel (W1's output conv,
/// a critic's last conv). oneDNN 2.6 runs these at about 10 GFLOP/s, 5 % of its speed on
/// wide convolutions, because its kernels vectorise over output channels; these loops
/// vectorise over input channels instead (SIMD16) and run about 10× faster on W1's
/// 32→1 conv3×3. Backward-data stays on oneDNN, which handles one channel well there.
enum SingleOutputConv {
    /// W[0, c, i, j] regrouped as [i][j][c], so that each tap's channels are contiguous
    /// like the NHWC pixels they multiply.
    private static func tapsMajor(_ g: ConvGeometry, _ w: UnsafeMutablePointer<Float>) -> Storage {
        let taps = g.kh * g.kw, c = g.srcC
        let out = Storage(count: taps * c)
        for ch in 0..<c { for t in 0..<taps { out.data[t * c + ch] = w[ch * taps + t] } }
        return out
    }

    /// Output columns [lo, hi) whose taps all fall inside the input row (no padding).
    private static func interiorColumns(_ g: ConvGeometry) -> Range<Int> {
        let lo = (g.padding + g.stride - 1) / g.stride
        let hi = g.srcW - g.kw + g.padding >= 0 ? min(g.dstW, (g.srcW - g.kw + g.padding) / g.stride + 1) : 0
        return lo..<max(lo, hi)
    }

    @inline(__always) private static func load(_ p: UnsafeMutablePointer<Float>) -> Float16x {
        UnsafeRawPointer(p).loadUnaligned(as: Float16x.self)
    }

    /// Σ of the 16 lanes as a tree (a lane-by-lane sum is a 16-add dependency chain).
    @inline(__always) private static func lanesSum(_ v: Float16x) -> Float {
        let a = v.lowHalf + v.highHalf, b = a.lowHalf + a.highHalf, c = b.lowHalf + b.highHalf
        return c[0] + c[1]
    }

    /// One output pixel anywhere (taps outside the input skipped).
    @inline(__always) private static func pixel(_ g: ConvGeometry, _ px: UnsafeMutablePointer<Float>,
                                                _ pw: UnsafeMutablePointer<Float>, _ n: Int, _ oh: Int, _ ow: Int) -> Float {
        let c = g.srcC, vectorEnd = c & ~15
        var acc = Float16x(repeating: 0)
        var tail: Float = 0
        for i in 0..<g.kh {
            let ih = oh * g.stride - g.padding + i
            if ih < 0 || ih >= g.srcH { continue }
            for j in 0..<g.kw {
                let iw = ow * g.stride - g.padding + j
                if iw < 0 || iw >= g.srcW { continue }
                let x = px + ((n * g.srcH + ih) * g.srcW + iw) * c, w = pw + (i * g.kw + j) * c
                var ch = 0
                while ch < vectorEnd { acc += load(x + ch) * load(w + ch); ch += 16 }
                while ch < c { tail += x[ch] * w[ch]; ch += 1 }
            }
        }
        return lanesSum(acc) + tail
    }

    /// dst[n, oh, ow] = bias + Σ_{i, j, c} src[n, oh·s − p + i, ow·s − p + j, c]·W[0, c, i, j].
    /// Interior pixels go four at a time with four independent accumulators (one chain of
    /// FMAs per pixel would wait on its own latency).
    static func forward(_ g: ConvGeometry, src: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(g.dstC == 1)
        let out = Tensor(uninitialized: g.dstShape)
        let wt = tapsMajor(g, weight.data)
        let px = src.data, pw = wt.data, po = out.data, b0 = bias?.data[0] ?? 0
        let c = g.srcC, s = g.stride, interior = interiorColumns(g), vectorOnly = c % 16 == 0
        Parallel.forRange(g.batch * g.dstH, grain: max(1, (1 << 15) / max(1, g.dstW * g.kh * g.kw * c))) { rows in
            for row in rows {
                let n = row / g.dstH, oh = row % g.dstH
                let o = po + row * g.dstW
                var ow = 0
                while ow < g.dstW {
                    guard vectorOnly, ow >= interior.lowerBound, ow + 4 <= interior.upperBound else {
                        o[ow] = pixel(g, px, pw, n, oh, ow) + b0
                        ow += 1
                        continue
                    }
                    var a0 = Float16x(repeating: 0), a1 = a0, a2 = a0, a3 = a0
                    for i in 0..<g.kh {
                        let ih = oh * s - g.padding + i
                        if ih < 0 || ih >= g.srcH { continue }
                        let xr = px + ((n * g.srcH + ih) * g.srcW + ow * s - g.padding) * c
                        for j in 0..<g.kw {
                            let w = pw + (i * g.kw + j) * c, x = xr + j * c
                            var ch = 0
                            while ch < c {
                                let wv = load(w + ch)
                                a0 += load(x + ch) * wv
                                a1 += load(x + s * c + ch) * wv
                                a2 += load(x + 2 * s * c + ch) * wv
                                a3 += load(x + 3 * s * c + ch) * wv
                                ch += 16
                            }
                        }
                    }
                    o[ow] = lanesSum(a0) + b0
                    o[ow + 1] = lanesSum(a1) + b0
                    o[ow + 2] = lanesSum(a2) + b0
                    o[ow + 3] = lanesSum(a3) + b0
                    ow += 4
                }
            }
        }
        withExtendedLifetime(wt) {}
        return out
    }

    /// diff_W[0, c, i, j] = Σ_{n, oh, ow} diff_dst[n, oh, ow]·src[n, oh·s − p + i, ow·s − p + j, c]
    /// over the `g.batch` images at `src` / `diffDst` (one chunk of `backwardWeights`, in one
    /// thread and a fixed order), and diff_bias = Σ diff_dst. Interior pixels go four at a
    /// time, so each accumulator makes one round trip through memory per four pixels.
    static func backwardWeights(_ g: ConvGeometry, src: UnsafeMutablePointer<Float>, diffDst: UnsafeMutablePointer<Float>,
                                diffWeights: UnsafeMutablePointer<Float>, diffBias: UnsafeMutablePointer<Float>?) {
        precondition(g.dstC == 1)
        let taps = g.kh * g.kw, c = g.srcC, vectorEnd = c & ~15, s = g.stride
        let interior = interiorColumns(g), vectorOnly = c % 16 == 0
        let acc = Storage(count: taps * c)
        let pa = acc.data
        pa.update(repeating: 0, count: taps * c)
        var biasSum: Float = 0
        for n in 0..<g.batch {
            for oh in 0..<g.dstH {
                let gRow = diffDst + (n * g.dstH + oh) * g.dstW
                var ow = 0
                while ow < g.dstW {
                    if vectorOnly && ow >= interior.lowerBound && ow + 4 <= interior.upperBound {
                        let g0 = Float16x(repeating: gRow[ow]), g1 = Float16x(repeating: gRow[ow + 1])
                        let g2 = Float16x(repeating: gRow[ow + 2]), g3 = Float16x(repeating: gRow[ow + 3])
                        biasSum += gRow[ow] + gRow[ow + 1] + gRow[ow + 2] + gRow[ow + 3]
                        for i in 0..<g.kh {
                            let ih = oh * s - g.padding + i
                            if ih < 0 || ih >= g.srcH { continue }
                            let xr = src + ((n * g.srcH + ih) * g.srcW + ow * s - g.padding) * c
                            for j in 0..<g.kw {
                                let x = xr + j * c, a = pa + (i * g.kw + j) * c
                                var ch = 0
                                while ch < c {
                                    let v = load(a + ch) + (g0 * load(x + ch) + g1 * load(x + s * c + ch)
                                                            + g2 * load(x + 2 * s * c + ch) + g3 * load(x + 3 * s * c + ch))
                                    UnsafeMutableRawPointer(a + ch).storeBytes(of: v, as: Float16x.self)
                                    ch += 16
                                }
                            }
                        }
                        ow += 4
                        continue
                    }
                    let gv = gRow[ow]
                    biasSum += gv
                    let gs = Float16x(repeating: gv)
                    for i in 0..<g.kh {
                        let ih = oh * s - g.padding + i
                        if ih < 0 || ih >= g.srcH { continue }
                        for j in 0..<g.kw {
                            let iw = ow * s - g.padding + j
                            if iw < 0 || iw >= g.srcW { continue }
                            let x = src + ((n * g.srcH + ih) * g.srcW + iw) * c, a = pa + (i * g.kw + j) * c
                            var ch = 0
                            while ch < vectorEnd {
                                let v = load(a + ch) + gs * load(x + ch)
                                UnsafeMutableRawPointer(a + ch).storeBytes(of: v, as: Float16x.self)
                                ch += 16
                            }
                            while ch < c { a[ch] += gv * x[ch]; ch += 1 }
                        }
                    }
                    ow += 1
                }
            }
        }
        for ch in 0..<c { for t in 0..<taps { diffWeights[ch * taps + t] = pa[t * c + ch] } }
        diffBias?[0] = biasSum
    }
}
