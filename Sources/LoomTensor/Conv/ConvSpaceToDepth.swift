/// Backward-data of a stride-2 convolution on an image with few channels (a discriminator's
/// first layer; a generator's last ConvT, whose forward is this pass) as the stride-1
/// convolution of the space-to-depth image: each 2×2 block of src pixels becomes one pixel
/// of 4·C channels, and the k×k kernel a k/2 × k/2 one,
///
///     W'[o, (i·2 + j)·C + c, u, v] = W[o, c, 2u + i, 2v + j],
///
/// so oneDNN's kernels see 12 channels instead of 3. W3's 3 → 64 layer (batch 64, one Zen 4
/// core): 49–50 GFLOP/s with `FewChannelConv`, 68–70 this way (oneDNN's part alone runs at
/// 85; the rest is regrouping the weights and the gradient).
enum SpaceToDepthConv {
    /// Whether `backwardData` takes `g`: few src channels, stride 2, even kernel, and a padded
    /// src that splits into whole 2×2 blocks.
    static func handles(_ g: ConvGeometry) -> Bool {
        FewChannelConv.handles(g) && g.stride == 2 && g.kh % 2 == 0 && g.kw % 2 == 0
            && g.padBottom >= 0 && g.padRight >= 0
            && (g.srcH + g.padding + g.padBottom) % 2 == 0 && (g.srcW + g.padding + g.padRight) % 2 == 0
    }

    /// The stride-1 convolution on the space-to-depth src.
    static func blocked(_ g: ConvGeometry) -> ConvGeometry {
        ConvGeometry(batch: g.batch, srcH: (g.srcH + g.padding + g.padBottom) / 2,
                     srcW: (g.srcW + g.padding + g.padRight) / 2, srcC: 4 * g.srcC,
                     dstH: g.dstH, dstW: g.dstW, dstC: g.dstC, kh: g.kh / 2, kw: g.kw / 2, stride: 1, padding: 0)
    }

    /// diff_src of `g`: the blocked convolution's diff_src, its 2×2 blocks spread back into
    /// pixels and the padding cut off.
    static func backwardData(_ g: ConvGeometry, diffDst: Tensor, weight: Tensor) -> Tensor {
        let b = blocked(g), c = g.srcC
        // W viewed as [o, c, u, i, v, j] (kernel row 2u + i, column 2v + j) → W' [o, i, j, c, u, v].
        let w = Tensor(uninitialized: b.weightShape)
        permuteCopy(weight.data, w.data, shape: [g.dstC, c, b.kh, 2, b.kw, 2], perm: [0, 3, 5, 1, 2, 4])
        let blockedGradient = ConvPrimitive.backwardData(b, diffDst: diffDst, weight: w)
        let out = Tensor(uninitialized: g.srcShape)
        let pg = blockedGradient.data, po = out.data
        // Where src column x lives in a blocked row: block (x + p) / 2, slot j = (x + p) % 2.
        let columns = (0..<g.srcW).map { x in ((x + g.padding) / 2) * b.srcC + ((x + g.padding) % 2) * c }
        columns.withUnsafeBufferPointer { column in
            Parallel.forRange(g.batch * g.srcH, grain: 16) { rows in
                for row in rows {
                    let n = row / g.srcH, y = row % g.srcH
                    let from = pg + (n * b.srcH + (y + g.padding) / 2) * b.srcW * b.srcC + ((y + g.padding) % 2) * 2 * c
                    let to = po + row * g.srcW * c
                    for x in 0..<g.srcW { (to + x * c).update(from: from + column[x], count: c) }
                }
            }
        }
        return out
    }
}
