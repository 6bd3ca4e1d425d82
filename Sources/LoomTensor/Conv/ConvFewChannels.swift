/// Backward-data of convolutions whose src has at most four channels: an image layer's
/// gradient (a discriminator's first conv) and, since a transposed convolution is this
/// pass, the forward of a generator's last ConvT to RGB. oneDNN 2.6 vectorises
/// backward-data over src channels, so three of them leave most of each vector empty
/// (about 20 GFLOP/s on W3's 64→3 ConvT); this loop vectorises over the dst channels
/// instead, like `SingleOutputConv`.
enum FewChannelConv {
    /// The largest src channel count this loop handles.
    static let maxChannels = 4

    /// Whether `backwardData` takes `g` rather than oneDNN.
    static func handles(_ g: ConvGeometry) -> Bool { g.srcC <= maxChannels && g.dstC >= 16 }

    /// W[o, c, i, j] regrouped as [i][j][c][o] with c padded to four (zeros), so that each
    /// tap's row for one src channel is contiguous like the NHWC diff_dst pixel it meets.
    private static func channelsLast(_ g: ConvGeometry, _ w: UnsafeMutablePointer<Float>) -> Storage {
        let taps = g.kh * g.kw, o = g.dstC, c = g.srcC, m = maxChannels
        let out = Storage(count: taps * m * o)
        out.data.update(repeating: 0, count: taps * m * o)
        for oc in 0..<o {
            for ch in 0..<c {
                for t in 0..<taps { out.data[(t * m + ch) * o + oc] = w[(oc * c + ch) * taps + t] }
            }
        }
        return out
    }

    @inline(__always) private static func load(_ p: UnsafePointer<Float>) -> Float16x {
        UnsafeRawPointer(p).loadUnaligned(as: Float16x.self)
    }

    /// Σ of the 16 lanes as a tree.
    @inline(__always) private static func lanesSum(_ v: Float16x) -> Float {
        let a = v.lowHalf + v.highHalf, b = a.lowHalf + a.highHalf, c = b.lowHalf + b.highHalf
        return c[0] + c[1]
    }

    /// The taps of every src coordinate along one axis, as a table of `kernel` slots per
    /// coordinate: the count, then (kernel index, diff_dst coordinate) for every k with
    /// (coordinate + padding − k) a multiple of the stride inside diff_dst.
    private struct Taps {
        let kernel: Int
        var count: [Int]
        var k: [Int], d: [Int]

        init(extent: Int, kernel: Int, stride: Int, padding: Int, limit: Int) {
            self.kernel = kernel
            count = Array(repeating: 0, count: extent)
            k = Array(repeating: 0, count: extent * kernel)
            d = k
            for x in 0..<extent {
                for kk in 0..<kernel {
                    let t = x + padding - kk
                    guard t >= 0 && t % stride == 0 && t / stride < limit else { continue }
                    k[x * kernel + count[x]] = kk
                    d[x * kernel + count[x]] = t / stride
                    count[x] += 1
                }
            }
        }

        /// Whether x and x + s meet the same kernel indices one diff_dst coordinate apart.
        func pairs(_ x: Int, _ s: Int) -> Bool {
            guard x + s < count.count, count[x] == count[x + s] else { return false }
            return (0..<count[x]).allSatisfy { t in
                k[x * kernel + t] == k[(x + s) * kernel + t] && d[(x + s) * kernel + t] == d[x * kernel + t] + 1
            }
        }
    }

    /// diff_src[n, y, x, c] = Σ_{i, j, o} diff_dst[n, (y + p − i)/s, (x + p − j)/s, o]·W[o, c, i, j]
    /// over the taps where (y + p − i) and (x + p − j) are multiples of s inside diff_dst.
    /// The (up to) four channels of a src pixel sit in four accumulators; src pixels x and
    /// x + s meet the same weights at neighbouring diff_dst pixels, so interior pixels go in
    /// such pairs and share every weight load. Each pixel is computed whole by one thread, so
    /// the result does not depend on the thread count.
    static func backwardData(_ g: ConvGeometry, diffDst: Tensor, weight: Tensor) -> Tensor {
        precondition(handles(g))
        let out = Tensor(uninitialized: g.srcShape)
        let wt = channelsLast(g, weight.data)
        let pd = UnsafePointer(diffDst.data), pw = UnsafePointer(wt.data), po = out.data
        let o = g.dstC, c = g.srcC, s = g.stride, vectorEnd = o & ~15, m = maxChannels
        let rows = Taps(extent: g.srcH, kernel: g.kh, stride: s, padding: g.padding, limit: g.dstH)
        let columns = Taps(extent: g.srcW, kernel: g.kw, stride: s, padding: g.padding, limit: g.dstW)
        // Each x is either single, the first of a pair (x, x + s), or the second of one.
        var role = [Int](repeating: 0, count: g.srcW)  // 0 single, 1 first, 2 second
        for x in 0..<g.srcW where role[x] == 0 && vectorEnd == o && columns.pairs(x, s) {
            role[x] = 1
            role[x + s] = 2
        }
        let work = max(1, g.srcW * g.kh * g.kw * o / (s * s))
        rows.count.withUnsafeBufferPointer { rowCount in rows.k.withUnsafeBufferPointer { rowK in
        rows.d.withUnsafeBufferPointer { rowD in columns.count.withUnsafeBufferPointer { colCount in
        columns.k.withUnsafeBufferPointer { colK in columns.d.withUnsafeBufferPointer { colD in
        role.withUnsafeBufferPointer { role in
        Parallel.forRange(g.batch * g.srcH, grain: max(1, (1 << 15) / work)) { range in
            for row in range {
                let n = row / g.srcH, y = row % g.srcH
                for x in 0..<g.srcW where role[x] != 2 {
                    let pair = role[x] == 1
                    var a0 = Float16x(repeating: 0), a1 = a0, a2 = a0, a3 = a0
                    var b0 = a0, b1 = a0, b2 = a0, b3 = a0
                    var t0: Float = 0, t1: Float = 0, t2: Float = 0, t3: Float = 0
                    for ti in 0..<rowCount[y] {
                        let i = rowK[y * g.kh + ti]
                        let dRow = pd + (n * g.dstH + rowD[y * g.kh + ti]) * g.dstW * o
                        for tj in 0..<colCount[x] {
                            let j = colK[x * g.kw + tj]
                            let d = dRow + colD[x * g.kw + tj] * o, w = pw + (i * g.kw + j) * m * o
                            var k = 0
                            if pair {
                                while k < o {
                                    let w0 = load(w + k), w1 = load(w + o + k), w2 = load(w + 2 * o + k), w3 = load(w + 3 * o + k)
                                    let u = load(d + k), v = load(d + o + k)
                                    a0 = a0.addingProduct(u, w0); a1 = a1.addingProduct(u, w1); a2 = a2.addingProduct(u, w2); a3 = a3.addingProduct(u, w3)
                                    b0 = b0.addingProduct(v, w0); b1 = b1.addingProduct(v, w1); b2 = b2.addingProduct(v, w2); b3 = b3.addingProduct(v, w3)
                                    k += 16
                                }
                                continue
                            }
                            while k < vectorEnd {
                                let u = load(d + k)
                                a0 = a0.addingProduct(u, load(w + k)); a1 = a1.addingProduct(u, load(w + o + k))
                                a2 = a2.addingProduct(u, load(w + 2 * o + k)); a3 = a3.addingProduct(u, load(w + 3 * o + k))
                                k += 16
                            }
                            while k < o {
                                let u = d[k]
                                t0 += u * w[k]; t1 += u * w[o + k]; t2 += u * w[2 * o + k]; t3 += u * w[3 * o + k]
                                k += 1
                            }
                        }
                    }
                    let dst = po + ((n * g.srcH + y) * g.srcW + x) * c
                    store(dst, c, (lanesSum(a0) + t0, lanesSum(a1) + t1, lanesSum(a2) + t2, lanesSum(a3) + t3))
                    if pair { store(dst + s * c, c, (lanesSum(b0), lanesSum(b1), lanesSum(b2), lanesSum(b3))) }
                }
            }
        }
        }}}}}}}
        withExtendedLifetime(wt) {}
        return out
    }

    /// Writes the first `c` of four channel values.
    @inline(__always) private static func store(_ p: UnsafeMutablePointer<Float>, _ c: Int, _ v: (Float, Float, Float, Float)) {
        p[0] = v.0
        if c > 1 { p[1] = v.1 }
        if c > 2 { p[2] = v.2 }
        if c > 3 { p[3] = v.3 }
    }
}
