import CDNNL

/// One 2-D convolution as oneDNN's forward convolution sees it: src `[N, srcH, srcW, srcC]`
/// (NHWC) and weights `[dstC, srcC, kh, kw]` (oihw) give dst `[N, dstH, dstW, dstC]`.
///
/// A transposed convolution is the backward-data pass of such a convolution with src and dst
/// exchanged: its input is the dst, its output the src, and PyTorch's `[I, O, kh, kw]`
/// transposed-conv weights are exactly this convolution's `[dstC, srcC, kh, kw]`.
struct ConvGeometry: Hashable, CustomStringConvertible {
    var batch: Int
    var srcH: Int, srcW: Int, srcC: Int
    var dstH: Int, dstW: Int, dstC: Int
    var kh: Int, kw: Int
    var stride: Int
    /// Left (top) padding; the right (bottom) one is derived so that the shapes are consistent
    /// and may be negative (down to 1 − stride) when the last rows of src are never read.
    var padding: Int

    /// A 1×1 convolution with stride 1 and no padding: a matrix product per pixel.
    var isPointwise: Bool { kh == 1 && kw == 1 && stride == 1 && padding == 0 }

    var padBottom: Int { (dstH - 1) * stride + kh - srcH - padding }
    var padRight: Int { (dstW - 1) * stride + kw - srcW - padding }

    var srcShape: [Int] { [batch, srcH, srcW, srcC] }
    var dstShape: [Int] { [batch, dstH, dstW, dstC] }
    var weightShape: [Int] { [dstC, srcC, kh, kw] }
    /// Multiply-adds × 2 of any one of the three passes.
    var flops: Double { 2 * Double(batch * dstH * dstW) * Double(dstC * srcC * kh * kw) }

    var description: String {
        "\(batch)×\(srcH)×\(srcW)×\(srcC) → \(dstH)×\(dstW)×\(dstC), k\(kh)×\(kw) s\(stride) p\(padding)"
    }

    /// The convolution of `input` `[N, H, W, Cin]` with `weight` `[Cout, Cin, kh, kw]`.
    static func conv(input x: [Int], weight w: [Int], stride: Int, padding: Int) -> ConvGeometry {
        precondition(x.count == 4, "conv2d: input must be [N, H, W, C], got \(x)")
        precondition(w.count == 4, "conv2d: weight must be [O, I, kh, kw], got \(w)")
        precondition(w[1] == x[3], "conv2d: weight \(w) expects \(w[1]) input channels, input \(x) has \(x[3])")
        precondition(stride >= 1 && padding >= 0, "conv2d: stride \(stride) and padding \(padding) invalid")
        let oh = (x[1] + 2 * padding - w[2]) / stride + 1, ow = (x[2] + 2 * padding - w[3]) / stride + 1
        precondition(x[1] + 2 * padding >= w[2] && x[2] + 2 * padding >= w[3],
                     "conv2d: kernel \(w[2])×\(w[3]) larger than padded input \(x[1])×\(x[2]) (padding \(padding))")
        return ConvGeometry(batch: x[0], srcH: x[1], srcW: x[2], srcC: x[3], dstH: oh, dstW: ow, dstC: w[0],
                            kh: w[2], kw: w[3], stride: stride, padding: padding)
    }

    /// The convolution whose backward-data pass is the transposed convolution of `input`
    /// `[N, H, W, Cin]` with `weight` `[Cin, Cout, kh, kw]` (PyTorch's output size).
    static func transposed(input x: [Int], weight w: [Int], stride: Int, padding: Int, outputPadding: Int) -> ConvGeometry {
        precondition(x.count == 4, "convTranspose2d: input must be [N, H, W, C], got \(x)")
        precondition(w.count == 4, "convTranspose2d: weight must be [I, O, kh, kw], got \(w)")
        precondition(w[0] == x[3], "convTranspose2d: weight \(w) expects \(w[0]) input channels, input \(x) has \(x[3])")
        precondition(stride >= 1 && padding >= 0, "convTranspose2d: stride \(stride) and padding \(padding) invalid")
        precondition(outputPadding >= 0 && outputPadding < stride,
                     "convTranspose2d: outputPadding \(outputPadding) must be in 0..<stride (\(stride))")
        let oh = (x[1] - 1) * stride - 2 * padding + w[2] + outputPadding
        let ow = (x[2] - 1) * stride - 2 * padding + w[3] + outputPadding
        precondition(oh >= 1 && ow >= 1, "convTranspose2d: output \(oh)×\(ow) is empty for input \(x), weight \(w), padding \(padding)")
        return ConvGeometry(batch: x[0], srcH: oh, srcW: ow, srcC: w[1], dstH: x[1], dstW: x[2], dstC: x[3],
                            kh: w[2], kw: w[3], stride: stride, padding: padding)
    }
}

/// The three passes of a convolution.
enum ConvPass: Hashable {
    /// src, weights (+ bias) → dst.
    case forward
    /// diff_dst, weights → diff_src.
    case backwardData
    /// src, diff_dst → diff_weights (+ diff_bias).
    case backwardWeights
}

/// A cached convolution primitive and, when oneDNN prefers another weights layout than
/// PyTorch's oihw, the reorder between the two.
final class ConvPrimitive {
    let main: DNNLPrimitive
    /// oihw → chosen layout (forward, backward-data) or chosen → oihw (backward-weights);
    /// nil when the layouts agree.
    let weightsReorder: DNNLPrimitive?
    /// For a blocked-layout kernel, per activation argument: NHWC → blocked for the inputs,
    /// blocked → NHWC for the output; empty for NHWC kernels.
    let activationReorders: [Int32: DNNLPrimitive]

    private struct Key: Hashable { var geometry: ConvGeometry, pass: ConvPass, bias: Bool, kernel: ConvKernel }

    /// The primitive for `pass` of `g` (with bias or diff_bias when `bias`), created on first
    /// use. Every primitive is single-threaded: Loom spreads shares of the batch (forward,
    /// backward-data) and fixed chunks of images (backward-weights, whose reduction oneDNN
    /// would split by thread count) over its own threads, so no result depends on the count.
    static func get(_ g: ConvGeometry, _ pass: ConvPass, bias: Bool) -> ConvPrimitive {
        let kernel = ConvKernel.choose(ConvAlgorithm.current, g, pass)
        return DNNL.cached(Key(geometry: g, pass: pass, bias: bias, kernel: kernel)) {
            DNNL.withThreads(1) {
                ConvPrimitive(g, pass, bias: bias, kernel: kernel) ?? ConvPrimitive(g, pass, bias: bias, kernel: .direct)!
            }
        }
    }

    /// nil when oneDNN has no Winograd kernel for this shape (never for direct convolution).
    private init?(_ g: ConvGeometry, _ pass: ConvPass, bias: Bool, kernel: ConvKernel) {
        let layout = kernel == .winograd ? dnnl_nChw16c : dnnl_nhwc
        let algorithm = kernel == .winograd ? dnnl_convolution_winograd : dnnl_convolution_direct
        var src = DNNL.memoryDesc([g.batch, g.srcC, g.srcH, g.srcW], layout)
        var dst = DNNL.memoryDesc([g.batch, g.dstC, g.dstH, g.dstW], layout)
        var weights = DNNL.memoryDesc(g.weightShape, dnnl_format_tag_any)
        let biasMD = UnsafeMutablePointer<dnnl_memory_desc_t>.allocate(capacity: 1)
        biasMD.initialize(to: DNNL.memoryDesc([g.dstC], dnnl_x))
        defer { biasMD.deallocate() }
        var user = DNNL.memoryDesc(g.weightShape, dnnl_oihw)
        let strides: [dnnl_dim_t] = [dnnl_dim_t(g.stride), dnnl_dim_t(g.stride)]
        let padL: [dnnl_dim_t] = [dnnl_dim_t(g.padding), dnnl_dim_t(g.padding)]
        let padR: [dnnl_dim_t] = [dnnl_dim_t(g.padBottom), dnnl_dim_t(g.padRight)]
        let what = "\(kernel) convolution \(pass) \(g)\(bias ? " with bias" : "")"
        let attr = DNNL.makeAttr()
        defer { dnnl_primitive_attr_destroy(attr) }

        // Winograd covers fewer shapes than its eligibility rule can tell (oneDNN checks more,
        // e.g. the image size): when oneDNN declines, the caller falls back to direct. Direct
        // convolution covers every shape, so a failure there is a bug and stops.
        func succeeded(_ status: dnnl_status_t, _ step: String) -> Bool {
            if kernel == .winograd { return status == dnnl_success }
            DNNL.check(status, "\(step) \(what)")
            return true
        }
        // The forward descriptor is the primitive itself or the backward passes' hint.
        func forwardDesc(bias: Bool) -> dnnl_primitive_desc_t? {
            var cd = dnnl_convolution_desc_t()
            var pd: dnnl_primitive_desc_t?
            guard succeeded(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, algorithm,
                                                               &src, &weights, bias ? UnsafePointer(biasMD) : nil, &dst,
                                                               strides, padL, padR), "describing"),
                  succeeded(dnnl_primitive_desc_create(&pd, &cd, attr, DNNL.engine, nil), "choosing an implementation of")
            else { return nil }
            return pd
        }

        var cd = dnnl_convolution_desc_t()
        var pd: dnnl_primitive_desc_t?
        let weightsQuery: dnnl_query_t
        switch pass {
        case .forward:
            pd = forwardDesc(bias: bias)
            weightsQuery = dnnl_query_weights_md
        case .backwardData:
            guard let hint = forwardDesc(bias: false) else { return nil }
            defer { dnnl_primitive_desc_destroy(hint) }
            if succeeded(dnnl_convolution_backward_data_desc_init(&cd, algorithm, &src, &weights, &dst,
                                                                  strides, padL, padR), "describing") {
                _ = succeeded(dnnl_primitive_desc_create(&pd, &cd, attr, DNNL.engine, hint), "choosing an implementation of")
            }
            weightsQuery = dnnl_query_weights_md
        case .backwardWeights:
            guard let hint = forwardDesc(bias: bias) else { return nil }
            defer { dnnl_primitive_desc_destroy(hint) }
            if succeeded(dnnl_convolution_backward_weights_desc_init(&cd, algorithm, &src, &weights,
                                                                     bias ? UnsafePointer(biasMD) : nil, &dst, strides, padL, padR),
                         "describing") {
                _ = succeeded(dnnl_primitive_desc_create(&pd, &cd, attr, DNNL.engine, hint), "choosing an implementation of")
            }
            weightsQuery = dnnl_query_diff_weights_md
        }
        guard pd != nil else { return nil }
        main = DNNLPrimitive(desc: pd!, what: what)
        let chosen = dnnl_primitive_desc_query_md(pd, weightsQuery, 0)!
        if dnnl_memory_desc_equal(chosen, &user) != 0 {
            weightsReorder = nil
        } else if pass == .backwardWeights {
            weightsReorder = withUnsafePointer(to: &user) { DNNLPrimitive(reorderFrom: chosen, to: $0) }
        } else {
            weightsReorder = withUnsafePointer(to: &user) { DNNLPrimitive(reorderFrom: $0, to: chosen) }
        }
        var reorders: [Int32: DNNLPrimitive] = [:]
        if kernel == .winograd {
            var srcNHWC = DNNL.memoryDesc([g.batch, g.srcC, g.srcH, g.srcW], dnnl_nhwc)
            var dstNHWC = DNNL.memoryDesc([g.batch, g.dstC, g.dstH, g.dstW], dnnl_nhwc)
            func toBlocked(_ user: inout dnnl_memory_desc_t, _ blocked: inout dnnl_memory_desc_t) -> DNNLPrimitive {
                DNNLPrimitive(reorderFrom: &user, to: &blocked)
            }
            switch pass {
            case .forward:
                reorders[loom_dnnl_arg_src()] = toBlocked(&srcNHWC, &src)
                reorders[loom_dnnl_arg_dst()] = DNNLPrimitive(reorderFrom: &dst, to: &dstNHWC)
            case .backwardData:
                reorders[loom_dnnl_arg_diff_dst()] = toBlocked(&dstNHWC, &dst)
                reorders[loom_dnnl_arg_diff_src()] = DNNLPrimitive(reorderFrom: &src, to: &srcNHWC)
            case .backwardWeights:
                reorders[loom_dnnl_arg_src()] = toBlocked(&srcNHWC, &src)
                reorders[loom_dnnl_arg_diff_dst()] = toBlocked(&dstNHWC, &dst)
            }
        }
        activationReorders = reorders
    }

    /// Runs the primitive with `args` in NHWC: blocked-layout kernels get their inputs
    /// reordered into pooled buffers before and their output reordered back after.
    private func execute(_ args: [(Int32, UnsafeMutableRawPointer)]) {
        guard !activationReorders.isEmpty else { return main.execute(args) }
        let from = loom_dnnl_arg_from(), to = loom_dnnl_arg_to()
        var blockedArgs = args
        var buffers: [Storage] = []
        var writeBack: [(DNNLPrimitive, Storage, UnsafeMutableRawPointer)] = []
        for (i, (arg, user)) in args.enumerated() {
            guard let reorder = activationReorders[arg] else { continue }
            let blocked = Storage(count: (main.bytes(arg) + 3) / 4)
            buffers.append(blocked)
            blockedArgs[i].1 = UnsafeMutableRawPointer(blocked.data)
            if arg == loom_dnnl_arg_dst() || arg == loom_dnnl_arg_diff_src() {  // the output
                writeBack.append((reorder, blocked, user))
            } else {
                reorder.execute([(from, user), (to, UnsafeMutableRawPointer(blocked.data))])
            }
        }
        main.execute(blockedArgs)
        for (reorder, blocked, user) in writeBack {
            reorder.execute([(from, UnsafeMutableRawPointer(blocked.data)), (to, user)])
        }
        withExtendedLifetime(buffers) {}
    }

    /// Runs backward-weights: diff_W is written in the primitive's layout into a pooled buffer
    /// and reordered into `weights` (oihw) after.
    private func runWritingWeights(_ weights: UnsafeMutablePointer<Float>, _ args: [(Int32, UnsafeMutableRawPointer)]) {
        let arg = loom_dnnl_arg_diff_weights()
        guard let reorder = weightsReorder else { return execute(args + [(arg, UnsafeMutableRawPointer(weights))]) }
        let chosen = Storage(count: (main.bytes(arg) + 3) / 4)
        execute(args + [(arg, UnsafeMutableRawPointer(chosen.data))])
        reorder.execute([(loom_dnnl_arg_from(), UnsafeMutableRawPointer(chosen.data)), (loom_dnnl_arg_to(), UnsafeMutableRawPointer(weights))])
    }

    /// Runs a pass that reads the weights (forward, backward-data) on shares of the batch
    /// (see `splitBatch`), `args(part, first)` giving each share's activations. When every
    /// share has the same primitive, the weights are reordered into its layout once for all
    /// shares, not once per share (DCGAN's 2 M-weight layers: a reorder per thread was work
    /// that a second thread did not shorten).
    private static func runReadingWeights(_ g: ConvGeometry, _ pass: ConvPass, bias: Bool, weights: UnsafeMutablePointer<Float>,
                                          _ args: (ConvGeometry, Int) -> [(Int32, UnsafeMutableRawPointer)]) {
        let parts = max(1, min(Parallel.threads, g.batch))
        var share = g
        share.batch = g.batch / parts
        let shared = g.batch % parts == 0 ? get(share, pass, bias: bias).reorderedWeights(weights) : nil
        splitBatch(g) { part, first in
            let primitive = get(part, pass, bias: bias)
            let chosen = shared ?? primitive.reorderedWeights(weights)
            primitive.execute(args(part, first) + [(loom_dnnl_arg_weights(), UnsafeMutableRawPointer(chosen?.data ?? weights))])
            withExtendedLifetime(chosen) {}
        }
    }

    /// `weights` (oihw) reordered into this primitive's layout in a pooled buffer, or nil when
    /// the primitive reads oihw itself.
    private func reorderedWeights(_ weights: UnsafeMutablePointer<Float>) -> Storage? {
        guard let reorder = weightsReorder else { return nil }
        let chosen = Storage(count: (main.bytes(loom_dnnl_arg_weights()) + 3) / 4)
        reorder.execute([(loom_dnnl_arg_from(), UnsafeMutableRawPointer(weights)), (loom_dnnl_arg_to(), UnsafeMutableRawPointer(chosen.data))])
        return chosen
    }

    // The raw passes below are off the tape; `Conv.swift` records them.

    /// dst = conv(src, W) (+ bias).
    /// Runs `body` once per thread on a contiguous share of the batch (a geometry for that
    /// many images and the index of its first image), or once on the whole batch with one
    /// thread. Images are independent in forward and backward-data, so splitting the batch
    /// scales almost perfectly where oneDNN's own threading of small layers does not
    /// (Winograd on 8×8–32×32 images gained nothing from a second thread), and every image
    /// is computed by the same single-threaded kernel whatever the thread count.
    private static func splitBatch(_ g: ConvGeometry, _ body: (ConvGeometry, Int) -> Void) {
        let parts = min(Parallel.threads, g.batch)
        guard parts > 1 else { return body(g, 0) }
        Parallel.forRange(parts, grain: 1) { range in
            for p in range {
                let first = g.batch * p / parts
                var part = g
                part.batch = g.batch * (p + 1) / parts - first
                body(part, first)
            }
        }
    }

    /// dst = conv(src, W) (+ bias).
    static func forward(_ g: ConvGeometry, src: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        if g.dstC == 1 { return SingleOutputConv.forward(g, src: src, weight: weight, bias: bias) }
        if FullWindowConv.handles(g) { return FullWindowConv.forward(g, src: src, weight: weight, bias: bias) }
        let out = Tensor(uninitialized: g.dstShape)
        let srcImage = g.srcH * g.srcW * g.srcC, dstImage = g.dstH * g.dstW * g.dstC
        let ps = src.data, pd = out.data, pb = bias?.data
        runReadingWeights(g, .forward, bias: pb != nil, weights: weight.data) { _, first in
            var args: [(Int32, UnsafeMutableRawPointer)] = [(loom_dnnl_arg_src(), UnsafeMutableRawPointer(ps + first * srcImage)),
                                                            (loom_dnnl_arg_dst(), UnsafeMutableRawPointer(pd + first * dstImage))]
            if let pb { args.append((loom_dnnl_arg_bias(), UnsafeMutableRawPointer(pb))) }
            return args
        }
        return out
    }

    /// diff_src = convᵀ(diff_dst, W), the adjoint of `forward` in src.
    static func backwardData(_ g: ConvGeometry, diffDst: Tensor, weight: Tensor) -> Tensor {
        if SpaceToDepthConv.handles(g) { return SpaceToDepthConv.backwardData(g, diffDst: diffDst, weight: weight) }
        if FewChannelConv.handles(g) { return FewChannelConv.backwardData(g, diffDst: diffDst, weight: weight) }
        if FullWindowConv.handles(g) { return FullWindowConv.backwardData(g, diffDst: diffDst, weight: weight) }
        let out = Tensor(uninitialized: g.srcShape)
        let srcImage = g.srcH * g.srcW * g.srcC, dstImage = g.dstH * g.dstW * g.dstC
        let pg = diffDst.data, pd = out.data
        runReadingWeights(g, .backwardData, bias: false, weights: weight.data) { _, first in
            [(loom_dnnl_arg_diff_dst(), UnsafeMutableRawPointer(pg + first * dstImage)),
             (loom_dnnl_arg_diff_src(), UnsafeMutableRawPointer(pd + first * srcImage))]
        }
        return out
    }

    /// Images per backward-weights chunk. The chunks are summed in a fixed order, so the
    /// result depends on the batch size only; large enough that each chunk runs near peak.
    static let weightChunkImages = 32

    /// diff_W (and diff_bias = diff_dst summed over N, H, W when `withBias`), the adjoint
    /// of `forward` in W: one single-threaded primitive (or GEMM for 1×1 and full-window kernels,
    /// or Loom's loop for one output channel) per chunk of
    /// images, chunks spread over `Parallel.threads`, partial results added in chunk order;
    /// strided layers with small outputs run as a forward convolution (`WeightsAsForwardConv`).
    static func backwardWeights(_ g: ConvGeometry, src: Tensor, diffDst: Tensor, withBias: Bool) -> (Tensor, Tensor?) {
        if WeightsAsForwardConv.handles(g) {
            return WeightsAsForwardConv.backwardWeights(g, src: src, diffDst: diffDst, withBias: withBias)
        }
        let per = weightChunkImages, chunks = (g.batch + per - 1) / per
        let wCount = g.weightShape.reduce(1, *), bCount = withBias ? g.dstC : 0
        let srcImage = g.srcH * g.srcW * g.srcC, dstImage = g.dstH * g.dstW * g.dstC
        // Chunk 0 writes the results, the others their own slot of `partial` (weights, then bias).
        let dW = Tensor(uninitialized: g.weightShape)
        let db = withBias ? Tensor(uninitialized: [g.dstC]) : nil
        let partial = chunks > 1 ? Storage(count: (chunks - 1) * (wCount + bCount)) : nil
        let ps = src.data, pg = diffDst.data, pw = dW.data, pb = db?.data, pp = partial?.data
        Parallel.forRange(chunks, grain: 1) { range in
            for k in range {
                var cg = g
                cg.batch = min(per, g.batch - k * per)
                let w = k == 0 ? pw : pp! + (k - 1) * (wCount + bCount)
                let bias = withBias ? (k == 0 ? pb! : w + wCount) : nil
                let x = ps + k * per * srcImage, dy = pg + k * per * dstImage
                if g.dstC == 1 {
                    SingleOutputConv.backwardWeights(cg, src: x, diffDst: dy, diffWeights: w, diffBias: bias)
                    continue
                }
                if g.isPointwise {
                    pointwiseBackwardWeights(cg, src: x, diffDst: dy, diffWeights: w, diffBias: bias)
                    continue
                }
                if FullWindowConv.handles(g) {
                    FullWindowConv.backwardWeights(cg, src: x, diffDst: dy, diffWeights: w, diffBias: bias)
                    continue
                }
                var args: [(Int32, UnsafeMutableRawPointer)] = [
                    (loom_dnnl_arg_src(), UnsafeMutableRawPointer(x)),
                    (loom_dnnl_arg_diff_dst(), UnsafeMutableRawPointer(dy)),
                ]
                if let bias { args.append((loom_dnnl_arg_diff_bias(), UnsafeMutableRawPointer(bias))) }
                get(cg, .backwardWeights, bias: withBias).runWritingWeights(w, args)
            }
        }
        for k in 1..<max(chunks, 1) {
            let part = pp! + (k - 1) * (wCount + bCount)
            for i in 0..<wCount { pw[i] += part[i] }
            if let pb { for i in 0..<bCount { pb[i] += part[wCount + i] } }
        }
        return (dW, db)
    }

    /// Backward-weights of a 1×1, stride-1, unpadded convolution, which is the GEMM
    /// diff_W[O, I] = Σ_pixels diff_dst[p, O]·src[p, I]. oneDNN's single-threaded sgemm runs it
    /// 1.2–1.8× faster than its jit_1x1 backward-weights on W1's shapes (OpenBLAS's sgemm
    /// is slower here and its result changes with its thread count). diff_bias sums diff_dst
    /// while it is still in cache.
    private static func pointwiseBackwardWeights(_ g: ConvGeometry, src: UnsafeMutablePointer<Float>,
                                                 diffDst: UnsafeMutablePointer<Float>,
                                                 diffWeights: UnsafeMutablePointer<Float>,
                                                 diffBias: UnsafeMutablePointer<Float>?) {
        let pixels = g.batch * g.dstH * g.dstW, o = g.dstC, i = g.srcC
        let status = DNNL.withThreads(1) {
            dnnl_sgemm(CChar(UInt8(ascii: "T")), CChar(UInt8(ascii: "N")), dnnl_dim_t(o), dnnl_dim_t(i),
                       dnnl_dim_t(pixels), 1, diffDst, dnnl_dim_t(o), src, dnnl_dim_t(i), 0, diffWeights, dnnl_dim_t(i))
        }
        DNNL.check(status, "sgemm for the weight gradient of 1×1 convolution \(g)")
        if let diffBias { sumRows(diffDst, rows: pixels, width: o, into: diffBias) }
    }
}

/// into[c] = Σ_r rows[r·width + c], rows added in order (a chunk's diff_bias: diff_dst summed
/// over its pixels).
func sumRows(_ rows: UnsafePointer<Float>, rows count: Int, width: Int, into: UnsafeMutablePointer<Float>) {
    into.update(repeating: 0, count: width)
    for r in 0..<count {
        let row = rows + r * width
        for c in 0..<width { into[c] += row[c] }
    }
}
