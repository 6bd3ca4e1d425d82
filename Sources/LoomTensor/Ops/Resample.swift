/// Spatial resampling of NHWC images: nearest-neighbour ×2 upsampling (the U-Net and VAE
/// decoders) and average pooling. Both are linear, so each backward is the adjoint op
/// (window sums ↔ window scatter), recorded in turn for second-order gradients.

extension Tensor {
    /// [N, H, W, C] → [N, 2H, 2W, C], every pixel copied into a 2×2 block.
    public func upsampleNearest2x() -> Tensor {
        precondition(rank == 4, "upsampleNearest2x expects [N, H, W, C], got \(shape)")
        let n = shape[0], h = shape[1], w = shape[2], c = shape[3]
        let out = Tensor(uninitialized: [n, 2 * h, 2 * w, c])
        let px = data, po = out.data
        let outRow = 2 * w * c
        Parallel.forRange(n * h, grain: Swift.max(1, (1 << 13) / Swift.max(1, outRow))) { range in
            for row in range {
                // Input row (n, y) becomes output rows (n, 2y) and (n, 2y + 1).
                let src = px + row * w * c, dst = po + 2 * row * outRow
                for x in 0..<w {
                    let s = src + x * c, d0 = dst + 2 * x * c, d1 = d0 + c
                    for k in 0..<c { d0[k] = s[k]; d1[k] = s[k] }
                }
                (dst + outRow).update(from: dst, count: outRow)
            }
        }
        return out.recorded("upsample_nearest2x", [self]) { g, _ in [g.windowSums(kernel: 2, stride: 2, scale: 1)] }
    }

    /// Mean over `kernel`×`kernel` windows every `stride` pixels (no padding):
    /// [N, H, W, C] → [N, (H − kernel)/stride + 1, (W − kernel)/stride + 1, C].
    public func avgPool2d(kernel: Int, stride: Int) -> Tensor {
        windowSums(kernel: kernel, stride: stride, scale: 1 / Float(kernel * kernel))
    }

    /// scale · Σ over each window; the forward of pooling and the backward of upsampling.
    func windowSums(kernel k: Int, stride s: Int, scale: Float) -> Tensor {
        precondition(rank == 4, "pooling expects [N, H, W, C], got \(shape)")
        precondition(k > 0 && s > 0 && k <= shape[1] && k <= shape[2],
                     "pooling: kernel \(k) / stride \(s) do not fit \(shape)")
        let n = shape[0], h = shape[1], w = shape[2], c = shape[3]
        let ho = (h - k) / s + 1, wo = (w - k) / s + 1
        let out = Tensor.zeros([n, ho, wo, c])
        let px = data, po = out.data
        Parallel.forRange(n * ho, grain: Swift.max(1, (1 << 12) / Swift.max(1, wo * c * k * k))) { range in
            for row in range {
                let b = row / ho, y = row % ho
                for x in 0..<wo {
                    let o = po + (row * wo + x) * c
                    // Window rows then columns: a fixed summation order.
                    for dy in 0..<k {
                        let src = px + ((b * h + y * s + dy) * w + x * s) * c
                        for dx in 0..<k { let p = src + dx * c; for ch in 0..<c { o[ch] += p[ch] } }
                    }
                    for ch in 0..<c { o[ch] *= scale }
                }
            }
        }
        let inShape = shape
        return out.recorded("window_sums", [self]) { g, _ in
            [g.windowScatter(to: inShape, kernel: k, stride: s, scale: scale)]
        }
    }

    /// The adjoint of `windowSums`: every window of a zero image of `inShape` receives
    /// scale · its output pixel, overlapping windows adding up.
    func windowScatter(to inShape: [Int], kernel k: Int, stride s: Int, scale: Float) -> Tensor {
        let n = inShape[0], h = inShape[1], w = inShape[2], c = inShape[3]
        let ho = shape[1], wo = shape[2]
        precondition(shape == [n, (h - k) / s + 1, (w - k) / s + 1, c], "windowScatter: \(shape) does not pool \(inShape)")
        let out = Tensor.zeros(inShape)
        let pg = data, po = out.data
        // Overlapping windows write the same pixels: then split by image only, so each pixel
        // adds up in one fixed order whatever the thread count.
        let rowsPerItem = s >= k ? 1 : ho
        Parallel.forRange(n * ho / rowsPerItem, grain: Swift.max(1, (1 << 12) / Swift.max(1, rowsPerItem * wo * c * k * k))) { range in
            for item in range {
                for row in (item * rowsPerItem)..<((item + 1) * rowsPerItem) {
                    let b = row / ho, y = row % ho
                    for x in 0..<wo {
                        let gp = pg + (row * wo + x) * c
                        for dy in 0..<k {
                            let dst = po + ((b * h + y * s + dy) * w + x * s) * c
                            for dx in 0..<k { let p = dst + dx * c; for ch in 0..<c { p[ch] += scale * gp[ch] } }
                        }
                    }
                }
            }
        }
        return out.recorded("window_scatter", [self]) { g, _ in [g.windowSums(kernel: k, stride: s, scale: scale)] }
    }
}
