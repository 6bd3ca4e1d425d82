/// adaLN's two fused passes (DiT): LayerNorm without parameters modulated per sample by a
/// shift and a scale, and the gated residual that adds a branch to the token stream.
///
/// Both work on tokens `x` `[N, T, D]` with per-sample vectors `[N, D]`. Threads split the
/// samples, and each sample sums its vector gradients over its tokens in token order, so
/// results do not depend on the thread count. With the tape on (second order) the backward
/// is written with composite ops instead.

/// LayerNorm(x)·(1 + scale) + shift over the last axis, `shift` and `scale` `[N, D]` per
/// sample: DiT's `modulate(norm(x), shift, scale)` in one pass.
public func modulatedLayerNorm(_ x: Tensor, shift: Tensor, scale: Tensor, eps: Float = 1e-6) -> Tensor {
    precondition(x.rank == 3 && shift.shape == [x.shape[0], x.shape[2]] && scale.shape == shift.shape,
                 "modulatedLayerNorm: tokens \(x.shape) need shift and scale [N, D], got \(shift.shape), \(scale.shape)")
    let (N, T, D) = (x.shape[0], x.shape[1], x.shape[2])
    let weight = Tensor(uninitialized: [N, D])   // 1 + scale
    let pw = weight.data, ps = scale.data
    for i in 0..<N * D { pw[i] = 1 + ps[i] }
    let out = Tensor(uninitialized: x.shape)
    let stats = Tensor(uninitialized: [2, N * T])  // per-row mean and 1/std
    let px = x.data, py = out.data, pshift = shift.data, mean = stats.data, rstd = stats.data + N * T
    Parallel.forRange(N, grain: 1) { samples in
        for n in samples {
            layerNormForward(x: px + n * T * D, y: py + n * T * D, weight: pw + n * D, bias: pshift + n * D,
                             mean: mean + n * T, rstd: rstd + n * T, rows: T, width: D, eps: eps)
        }
    }
    return out.recorded("modulated_layer_norm", [x, shift, scale]) { g, needs in
        if GradMode.isEnabled {
            let (xhat, std) = NormComposite.normalize(x.reshaped([N * T, D]), statShape: [N * T, 1], eps: eps)
            let w = scale.reshaped([N, 1, D]) + 1
            let dx = needs[0] ? NormComposite.backward(
                gz: (g * w).reshaped([N * T, D]), xhat: xhat, std: std, weight: nil, statShape: [N * T, 1],
                affineShape: [1, D], throughStatistics: true, needX: true, needW: false, needB: false).0?.reshaped(x.shape) : nil
            return [dx, needs[1] ? g.summed(to: [N, 1, D]).reshaped([N, D]) : nil,
                    needs[2] ? (g * xhat.reshaped(x.shape)).summed(to: [N, 1, D]).reshaped([N, D]) : nil]
        }
        let dx = Tensor(uninitialized: x.shape), dshift = Tensor.zeros([N, D]), dscale = Tensor.zeros([N, D])
        let pg = g.data, pdx = dx.data, pds = dshift.data, pdc = dscale.data
        // From the captured tensors, which keeps them alive until here.
        let pw = weight.data, px = x.data, mean = stats.data, rstd = stats.data + N * T
        Parallel.forRange(N, grain: 1) { samples in
            for n in samples {
                let w = pw + n * D, dsh = pds + n * D, dsc = pdc + n * D
                for r in n * T..<(n + 1) * T {
                    let xr = px + r * D, gr = pg + r * D
                    layerNormInputGradientRow(x: xr, g: gr, weight: w, mean: mean[r], rstd: rstd[r], dx: pdx + r * D, width: D)
                    // The scale is the row's weight and the shift its bias: their sums over the tokens.
                    layerNormAffineGradientRow(x: xr, g: gr, mean: mean[r], rstd: rstd[r], dw: dsc, db: dsh, width: D)
                }
            }
        }
        return [needs[0] ? dx : nil, needs[1] ? dshift : nil, needs[2] ? dscale : nil]
    }
}

/// x + gate·y, `gate` `[N, D]` per sample broadcast over the tokens of `x` and `y`
/// `[N, T, D]`: the residual update of an adaLN-Zero block in one pass.
public func gatedResidual(_ x: Tensor, gate: Tensor, _ y: Tensor) -> Tensor {
    precondition(x.rank == 3 && y.shape == x.shape && gate.shape == [x.shape[0], x.shape[2]],
                 "gatedResidual: x \(x.shape), gate \(gate.shape) and y \(y.shape) must be [N, T, D], [N, D], [N, T, D]")
    let (N, T, D) = (x.shape[0], x.shape[1], x.shape[2])
    let out = Tensor(uninitialized: x.shape)
    let px = x.data, py = y.data, pgate = gate.data, po = out.data
    Parallel.forRange(N, grain: 1) { samples in
        for n in samples {
            let gn = pgate + n * D
            for r in n * T..<(n + 1) * T {
                let o = po + r * D, xr = px + r * D, yr = py + r * D
                for j in 0..<D { o[j] = xr[j] + gn[j] * yr[j] }
            }
        }
    }
    return out.recorded("gated_residual", [x, gate, y]) { g, needs in
        if GradMode.isEnabled {
            return [needs[0] ? g : nil, needs[1] ? (g * y).summed(to: [N, 1, D]).reshaped([N, D]) : nil,
                    needs[2] ? g * gate.reshaped([N, 1, D]) : nil]
        }
        let dgate = needs[1] ? Tensor.zeros([N, D]) : nil, dy = needs[2] ? Tensor(uninitialized: y.shape) : nil
        let pg = g.data, pdg = dgate?.data, pdy = dy?.data
        Parallel.forRange(N, grain: 1) { samples in
            for n in samples {
                let gn = pgate + n * D
                for r in n * T..<(n + 1) * T {
                    let gr = pg + r * D, yr = py + r * D
                    if let pdg { let d = pdg + n * D; for j in 0..<D { d[j] += gr[j] * yr[j] } }
                    if let pdy { let d = pdy + r * D; for j in 0..<D { d[j] = gr[j] * gn[j] } }
                }
            }
        }
        return [needs[0] ? g : nil, dgate, dy]
    }
}
