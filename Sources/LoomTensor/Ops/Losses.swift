/// Pointwise losses (MSE, L1, binary cross-entropy on logits). Both arguments may require
/// gradients (e.g. a distance between two network outputs). Backward passes are fused SIMD
/// kernels when the tape is off and differentiable composites when building a graph.

/// How a loss combines its per-element values: their mean, their sum, or none (the
/// elementwise losses, shaped like the inputs).
public enum Reduction: Sendable {
    /// The mean over all elements (a scalar).
    case mean
    /// The sum over all elements (a scalar).
    case sum
    /// No reduction: the per-element losses, shaped like the inputs.
    case none
}

/// out = f(a, b, c) lane-wise for three tensors of the same shape (fused loss backward).
@inline(__always)
func mapSIMD(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float16x, Float16x, Float16x) -> Float16x) -> Tensor {
    precondition(a.shape == b.shape && a.shape == c.shape, "mapSIMD: shapes \(a.shape), \(b.shape), \(c.shape) differ")
    let out = Tensor(uninitialized: a.shape)
    let pa = a.data, pb = b.data, pc = c.data, po = out.data
    Parallel.forRange(a.count, grain: 1 << 14) { r in
        var i = r.lowerBound
        while i + 16 <= r.upperBound {
            let va = UnsafeRawPointer(pa + i).loadUnaligned(as: Float16x.self)
            let vb = UnsafeRawPointer(pb + i).loadUnaligned(as: Float16x.self)
            let vc = UnsafeRawPointer(pc + i).loadUnaligned(as: Float16x.self)
            UnsafeMutableRawPointer(po + i).storeBytes(of: f(va, vb, vc), as: Float16x.self)
            i += 16
        }
        if i < r.upperBound {
            var va = Float16x(repeating: 0), vb = va, vc = va
            for k in 0..<(r.upperBound - i) { va[k] = pa[i + k]; vb[k] = pb[i + k]; vc[k] = pc[i + k] }
            let v = f(va, vb, vc)
            for k in 0..<(r.upperBound - i) { po[i + k] = v[k] }
        }
    }
    return out
}

/// log(1 + u) per lane for u in [0, 1] (relative error < 3e-7, also for tiny u): the series
/// 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …) with s = u/(2 + u) ≤ 1/3.
@inline(__always)
func simdLog1pUnit(_ u: Float16x) -> Float16x {
    let s = u / (2 + u)
    let z = s * s
    var p = Float16x(repeating: 1.0 / 15)
    p = p * z + 1.0 / 13
    p = p * z + 1.0 / 11
    p = p * z + 1.0 / 9
    p = p * z + 1.0 / 7
    p = p * z + 1.0 / 5
    p = p * z + 1.0 / 3
    p = p * z + 1
    return 2 * s * p
}

/// Combines per-element losses; the sum runs serially in a fixed order (deterministic).
private func reduceLoss(_ elems: Tensor, _ reduction: Reduction) -> Tensor {
    switch reduction {
    case .none: return elems
    case .sum: return Tensor.scalar(simdSum(elems.data, elems.count))
    case .mean: return Tensor.scalar(simdSum(elems.data, elems.count) / Float(elems.count))
    }
}

/// The incoming gradient per element as a tensor: g/n for a mean (a scalar that broadcasts),
/// g for a sum (scalar) or for no reduction (elementwise). Differentiable in g.
private func elementWeight(_ g: Tensor, _ reduction: Reduction, _ n: Int) -> Tensor {
    reduction == .mean ? g * (1 / Float(n)) : g
}

/// The incoming gradient per element as a number for the fused kernels; nil for `.none`,
/// where it varies per element.
private func elementScale(_ g: Tensor, _ reduction: Reduction, _ n: Int) -> Float? {
    switch reduction {
    case .none: return nil
    case .sum: return g.item
    case .mean: return g.item / Float(n)
    }
}

private func checkShapes(_ name: String, _ a: Tensor, _ b: Tensor) {
    precondition(a.shape == b.shape, "\(name): prediction \(a.shape) and target \(b.shape) differ (no broadcasting)")
}

/// Mean squared error (p - t)², reduced by `reduction`.
public func mseLoss(_ prediction: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
    checkShapes("mseLoss", prediction, target)
    let n = prediction.count
    let elems = mapSIMD(prediction, target) { let d = $0 - $1; return d * d }
    return reduceLoss(elems, reduction).recorded("mse_loss", [prediction, target]) { g, needs in
        let dp: Tensor
        if GradMode.isEnabled {
            dp = (prediction - target) * elementWeight(g, reduction, n) * 2
        } else if let s = elementScale(g, reduction, n) {
            let s2 = 2 * s
            dp = mapSIMD(prediction, target) { ($0 - $1) * s2 }
        } else {
            dp = mapSIMD(prediction, target, g) { ($0 - $1) * 2 * $2 }
        }
        return [needs[0] ? dp : nil, needs[1] ? -dp : nil]
    }
}

/// Mean absolute error |p - t|, reduced by `reduction`; the gradient at p = t is 0.
public func l1Loss(_ prediction: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
    checkShapes("l1Loss", prediction, target)
    let n = prediction.count
    let elems = mapSIMD(prediction, target) { simdAbs($0 - $1) }
    return reduceLoss(elems, reduction).recorded("l1_loss", [prediction, target]) { g, needs in
        let dp: Tensor
        if GradMode.isEnabled {
            // sign(p - t) is piecewise constant: a tape-free factor.
            dp = mapSIMD(prediction, target) { simdSign($0 - $1) } * elementWeight(g, reduction, n)
        } else if let s = elementScale(g, reduction, n) {
            dp = mapSIMD(prediction, target) { simdSign($0 - $1) * s }
        } else {
            dp = mapSIMD(prediction, target, g) { simdSign($0 - $1) * $2 }
        }
        return [needs[0] ? dp : nil, needs[1] ? -dp : nil]
    }
}

/// Binary cross-entropy of sigmoid(logits) against targets in [0, 1], computed from the
/// logits as max(x, 0) - x·t + log(1 + e^-|x|), which never overflows or takes log(0).
public func bceWithLogitsLoss(_ logits: Tensor, _ targets: Tensor, reduction: Reduction = .mean) -> Tensor {
    checkShapes("bceWithLogitsLoss", logits, targets)
    let n = logits.count
    let elems = mapLanes(logits, targets, BCELanes())
    return reduceLoss(elems, reduction).recorded("bce_with_logits", [logits, targets]) { g, needs in
        // ∂/∂x = σ(x) - t, ∂/∂t = -x.
        if GradMode.isEnabled {
            let w = elementWeight(g, reduction, n)
            return [needs[0] ? (logits.sigmoid() - targets) * w : nil, needs[1] ? -(logits * w) : nil]
        }
        if let s = elementScale(g, reduction, n) {
            return [needs[0] ? mapLanes(logits, targets, BCEGradLanes(s: s)) : nil,
                    needs[1] ? mapSIMD(logits) { $0 * -s } : nil]
        }
        return [needs[0] ? mapSIMD(logits, targets, g) { (simdSigmoid($0) - $1) * $2 } : nil,
                needs[1] ? mapSIMD(logits, g) { -$0 * $1 } : nil]
    }
}
