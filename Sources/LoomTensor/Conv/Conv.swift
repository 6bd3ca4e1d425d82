/// 2-D convolution and transposed convolution on oneDNN (NHWC activations, PyTorch-shaped
/// weights).
///
/// A convolution has three passes, F(x, W) = forward, D(g, W) = backward-data and
/// T(x, g) = backward-weights, each linear in each argument and tied by
/// ⟨F(x, W), g⟩ = ⟨x, D(g, W)⟩ = ⟨W, T(x, g)⟩. Each pass is a recorded op whose backward is
/// made of the other two, so gradients of gradients (WGAN-GP, R1) run on the same fast
/// kernels as the first order. A transposed convolution is D of the convolution with input
/// and output exchanged, so it reuses the same three ops.

/// F(x, W) on the tape: its backward is (D(g, W), T(x, g)).
func convForward(_ geo: ConvGeometry, _ x: Tensor, _ w: Tensor) -> Tensor {
    ConvPrimitive.forward(geo, src: x, weight: w, bias: nil).recorded("conv_forward", [x, w]) { g, needs in
        [needs[0] ? convBackwardData(geo, g, w) : nil, needs[1] ? convBackwardWeights(geo, x, g) : nil]
    }
}

/// D(g, W) on the tape: ⟨D(g, W), u⟩ = ⟨F(u, W), g⟩ = ⟨W, T(u, g)⟩ gives its backward.
func convBackwardData(_ geo: ConvGeometry, _ g: Tensor, _ w: Tensor) -> Tensor {
    ConvPrimitive.backwardData(geo, diffDst: g, weight: w).recorded("conv_backward_data", [g, w]) { u, needs in
        [needs[0] ? convForward(geo, u, w) : nil, needs[1] ? convBackwardWeights(geo, u, g) : nil]
    }
}

/// T(x, g) on the tape: ⟨T(x, g), V⟩ = ⟨x, D(g, V)⟩ = ⟨F(x, V), g⟩ gives its backward.
func convBackwardWeights(_ geo: ConvGeometry, _ x: Tensor, _ g: Tensor) -> Tensor {
    ConvPrimitive.backwardWeights(geo, src: x, diffDst: g, withBias: false).0
        .recorded("conv_backward_weights", [x, g]) { v, needs in
            [needs[0] ? convBackwardData(geo, g, v) : nil, needs[1] ? convForward(geo, x, v) : nil]
        }
}

/// 2-D convolution (cross-correlation, as PyTorch's `conv2d`): x `[N, H, W, Cin]`, weight
/// `[Cout, Cin, kh, kw]`, bias `[Cout]` → `[N, Ho, Wo, Cout]`, Ho = (H + 2p − kh) / s + 1.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
    let geo = ConvGeometry.conv(input: x.shape, weight: weight.shape, stride: stride, padding: padding)
    if let bias { precondition(bias.shape == [geo.dstC], "conv2d: bias must be [\(geo.dstC)], got \(bias.shape)") }
    let out = ConvPrimitive.forward(geo, src: x, weight: weight, bias: bias)
    return out.recorded("conv2d", bias.map { [x, weight, $0] } ?? [x, weight]) { g, needs in
        let wantBias = needs.count > 2 && needs[2]
        var dW: Tensor?, db: Tensor?
        if !GradMode.isEnabled && needs[1] {
            // First order: oneDNN sums diff_bias while it reads g for diff_weights.
            (dW, db) = ConvPrimitive.backwardWeights(geo, src: x, diffDst: g, withBias: wantBias)
        } else {
            dW = needs[1] ? convBackwardWeights(geo, x, g) : nil
            db = wantBias ? channelSum(g) : nil
        }
        let dx = needs[0] ? convBackwardData(geo, g, weight) : nil
        return bias == nil ? [dx, dW] : [dx, dW, db]
    }
}

/// 2-D transposed convolution with PyTorch's semantics (`conv_transpose2d`): x
/// `[N, H, W, Cin]`, weight `[Cin, Cout, kh, kw]`, bias `[Cout]` → `[N, Ho, Wo, Cout]`,
/// Ho = (H − 1)·s − 2p + kh + outputPadding.
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0) -> Tensor {
    let geo = ConvGeometry.transposed(input: x.shape, weight: weight.shape, stride: stride, padding: padding,
                                      outputPadding: outputPadding)
    if let bias { precondition(bias.shape == [geo.srcC], "convTranspose2d: bias must be [\(geo.srcC)], got \(bias.shape)") }
    let out = ConvPrimitive.backwardData(geo, diffDst: x, weight: weight)
    if let bias { addChannelBias(out, bias) }
    return out.recorded("conv_transpose2d", bias.map { [x, weight, $0] } ?? [x, weight]) { g, needs in
        let dx = needs[0] ? convForward(geo, g, weight) : nil
        let dW = needs[1] ? convBackwardWeights(geo, g, x) : nil
        let db = needs.count > 2 && needs[2] ? channelSum(g) : nil
        return bias == nil ? [dx, dW] : [dx, dW, db]
    }
}

/// Rows of this many elements or fewer are summed per chunk in `channelSum`; fixed, so the
/// reduction order never depends on the thread count.
private let channelSumChunk = 1 << 14

/// Σ over every axis but the last (the bias gradient of an NHWC op), on the tape.
func channelSum(_ t: Tensor) -> Tensor {
    let c = t.shape.last!, rows = t.count / max(c, 1)
    let chunkRows = max(1, channelSumChunk / max(c, 1))
    let chunks = max(1, (rows + chunkRows - 1) / chunkRows)
    let partial = Tensor.zeros([chunks, c])
    let pp = partial.data, pt = t.data
    Parallel.forRange(chunks, grain: 1) { range in
        for k in range {
            let acc = pp + k * c
            for row in (k * chunkRows)..<min(rows, (k + 1) * chunkRows) {
                let src = pt + row * c
                for i in 0..<c { acc[i] += src[i] }
            }
        }
    }
    let out = Tensor(uninitialized: [c])
    let po = out.data
    po.update(from: pp, count: c)
    for k in 1..<chunks {
        let src = pp + k * c
        for i in 0..<c { po[i] += src[i] }
    }
    let shape = t.shape
    return out.recorded("channel_sum", [t]) { g, _ in [g.expanded(to: shape)] }
}

/// out[…, c] += bias[c] in place (the transposed convolution's bias; oneDNN's
/// backward-data has none to fuse).
private func addChannelBias(_ out: Tensor, _ bias: Tensor) {
    let c = bias.count, rows = out.count / max(c, 1)
    let po = out.data, pb = bias.data
    Parallel.forRange(rows, grain: max(1, (1 << 14) / max(c, 1))) { range in
        for row in range {
            let o = po + row * c
            for i in 0..<c { o[i] += pb[i] }
        }
    }
}
