import CDNNL

/// Backward-weights of a convolution with a small output image, run as the forward
/// convolution of the transposed problem.
///
///     diff_W[o, c, ky, kx] = Σ_{n, oy, ox} diff_dst[n, oy, ox, o] · src[n, s·oy − p + ky, s·ox − p + kx, c]
///
/// is the forward convolution of an image with batch c and channels n, X'[c, n, H, W] = src
/// transposed, with the kernel W'[o, n, dstH, dstW] = diff_dst transposed, dilated by the
/// stride s, at stride 1 and the same padding: its output [c, o, kh, kw] is diff_W transposed.
/// oneDNN 2.6 has no brgemm backward-weights for f32. On one Zen 4 core (batch 64, 4×4
/// output pixels) its jit kernel ran 84–101 GFLOP/s on 128 → 256 and 256 → 512 4×4 stride-2
/// layers and on 128- and 256-channel 3×3 stride-2 ones; this form ran them at 100–123, the
/// transposes included. With 8×8 output pixels the dilated kernel grows and the forward form
/// lost (W3's 64 → 128 layer: 89–98 against 109–117; 128 → 256: 102–104 against 111), and at
/// stride 1 the jit kernel (Winograd there) wins: so strided convolutions with at most 16
/// output pixels only.
///
/// The batch of the transposed problem (the input channels) is cut into fixed shares of
/// `shareChannels`, spread over the threads: each diff_W element is one whole reduction in one
/// kernel call, so results do not depend on the thread count.
enum WeightsAsForwardConv {
    /// Input channels per forward call.
    static let shareChannels = 64

    /// Whether `g`'s backward-weights runs here.
    static func handles(_ g: ConvGeometry) -> Bool {
        // oneDNN's dilated convolution rejects a negative right padding (src rows never read).
        g.stride > 1 && g.dstH * g.dstW <= 16 && g.srcC >= shareChannels && g.srcC % shareChannels == 0
            && g.dstC >= 16 && g.kh * g.kw > 1 && g.padBottom >= 0 && g.padRight >= 0
    }

    private struct Key: Hashable { var geometry: ConvGeometry }

    /// The forward primitive for one share of channels and the reorder of W' into its layout.
    private final class Plan {
        let forward: DNNLPrimitive
        let kernelReorder: DNNLPrimitive?

        init(_ g: ConvGeometry) {
            let c = WeightsAsForwardConv.shareChannels
            var src = DNNL.memoryDesc([c, g.batch, g.srcH, g.srcW], dnnl_nhwc)
            var kernel = DNNL.memoryDesc([g.dstC, g.batch, g.dstH, g.dstW], dnnl_format_tag_any)
            var plain = DNNL.memoryDesc([g.dstC, g.batch, g.dstH, g.dstW], dnnl_oihw)
            var dst = DNNL.memoryDesc([c, g.dstC, g.kh, g.kw], dnnl_nhwc)
            let one: [dnnl_dim_t] = [1, 1]
            let dilation: [dnnl_dim_t] = [dnnl_dim_t(g.stride - 1), dnnl_dim_t(g.stride - 1)]
            let padL: [dnnl_dim_t] = [dnnl_dim_t(g.padding), dnnl_dim_t(g.padding)]
            let padR: [dnnl_dim_t] = [dnnl_dim_t(g.padBottom), dnnl_dim_t(g.padRight)]
            let what = "backward-weights of \(g) as a forward convolution"
            let attr = DNNL.makeAttr()
            defer { dnnl_primitive_attr_destroy(attr) }
            var cd = dnnl_convolution_desc_t()
            DNNL.check(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                                  &src, &kernel, nil, &dst, one, dilation, padL, padR),
                       "describing \(what)")
            var pd: dnnl_primitive_desc_t?
            DNNL.check(dnnl_primitive_desc_create(&pd, &cd, attr, DNNL.engine, nil), "choosing an implementation of \(what)")
            forward = DNNLPrimitive(desc: pd!, what: what)
            let chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)!
            kernelReorder = dnnl_memory_desc_equal(chosen, &plain) != 0 ? nil : DNNLPrimitive(reorderFrom: &plain, to: chosen)
        }
    }

    private static func plan(_ g: ConvGeometry) -> Plan {
        DNNL.cached(Key(geometry: g)) { DNNL.withThreads(1) { Plan(g) } }
    }

    /// The implementation oneDNN runs for `g` (for benchmarks).
    static func implementation(_ g: ConvGeometry) -> String { plan(g).forward.implementation }

    /// diff_W (oihw) and, when `withBias`, diff_bias = diff_dst summed over N, H, W.
    static func backwardWeights(_ g: ConvGeometry, src: Tensor, diffDst: Tensor, withBias: Bool) -> (Tensor, Tensor?) {
        let plan = plan(g)
        let taps = g.kh * g.kw, share = shareChannels, parts = g.srcC / share
        // X'[c][h][w][n], W'[o][n][oy][ox], both plain copies of the inputs.
        let image = Storage(count: src.count), plainKernel = Storage(count: diffDst.count)
        permuteCopy(src.data, image.data, shape: src.shape, perm: [3, 1, 2, 0])
        permuteCopy(diffDst.data, plainKernel.data, shape: diffDst.shape, perm: [3, 0, 1, 2])
        let from = loom_dnnl_arg_from(), to = loom_dnnl_arg_to()
        var kernel = plainKernel
        if let reorder = plan.kernelReorder {
            kernel = Storage(count: (plan.forward.bytes(loom_dnnl_arg_weights()) + 3) / 4)
            reorder.execute([(from, UnsafeMutableRawPointer(plainKernel.data)), (to, UnsafeMutableRawPointer(kernel.data))])
        }
        // out[c][ky][kx][o], then transposed into diff_W[o][c][ky][kx].
        let out = Storage(count: g.srcC * taps * g.dstC)
        let imageShare = share * g.srcH * g.srcW * g.batch, outShare = share * taps * g.dstC
        let pi = image.data, pk = kernel.data, po = out.data
        Parallel.forRange(parts, grain: 1) { range in
            for part in range {
                plan.forward.execute([(loom_dnnl_arg_src(), UnsafeMutableRawPointer(pi + part * imageShare)),
                                      (loom_dnnl_arg_weights(), UnsafeMutableRawPointer(pk)),
                                      (loom_dnnl_arg_dst(), UnsafeMutableRawPointer(po + part * outShare))])
            }
        }
        let dW = Tensor(uninitialized: g.weightShape)
        permuteCopy(po, dW.data, shape: [g.srcC, g.kh, g.kw, g.dstC], perm: [3, 0, 1, 2])
        guard withBias else { return (dW, nil) }
        let db = Tensor(uninitialized: [g.dstC])
        sumRows(diffDst.data, rows: g.batch * g.dstH * g.dstW, width: g.dstC, into: db.data)
        return (dW, db)
    }
}
