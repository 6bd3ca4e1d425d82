import LoomTensor

/// The few tensor ops diffusion math needs beyond LoomTensor: every formula here is a sum of
/// tensors scaled by per-sample coefficients (one number per batch item, from the schedule
/// at that item's timestep) and a per-sample weighted MSE. Fusing them saves the [N,1,1,1]
/// coefficient tensors and one temporary per term.

/// Σ_k c_k[n] · x_k[n, …] for every batch item n; all tensors share one shape whose first
/// axis is the batch, and each coefficient array has one entry per item.
public func perSampleLinearCombination(_ terms: [(tensor: Tensor, coefficients: [Float])]) -> Tensor {
    precondition(!terms.isEmpty, "perSampleLinearCombination needs at least one term")
    let shape = terms[0].tensor.shape
    precondition(!shape.isEmpty, "perSampleLinearCombination needs a batch axis")
    let n = shape[0]
    for term in terms {
        precondition(term.tensor.shape == shape, "per-sample combination: \(term.tensor.shape) vs \(shape)")
        precondition(term.coefficients.count == n, "per-sample combination: \(term.coefficients.count) coefficients for \(n) samples")
    }
    let out = Tensor(uninitialized: shape)
    let total = out.count
    if total == 0 { return out }
    let per = total / n
    let po = out.data
    let xs = terms.map { $0.tensor.data }
    let cs = terms.map(\.coefficients)
    Parallel.forRange(total, grain: 1 << 14) { range in
        // Walk the range in per-sample segments so the coefficients are loop constants.
        var i = range.lowerBound
        while i < range.upperBound {
            let s = i / per
            let end = Swift.min(range.upperBound, (s + 1) * per)
            switch xs.count {
            case 1:
                let a = cs[0][s], x = xs[0]
                for j in i..<end { po[j] = a * x[j] }
            case 2:
                let a = cs[0][s], b = cs[1][s], x = xs[0], y = xs[1]
                for j in i..<end { po[j] = a * x[j] + b * y[j] }
            case 3:
                let a = cs[0][s], b = cs[1][s], c = cs[2][s], x = xs[0], y = xs[1], z = xs[2]
                for j in i..<end { po[j] = a * x[j] + b * y[j] + c * z[j] }
            default:
                let a = cs[0][s], x = xs[0]
                for j in i..<end { po[j] = a * x[j] }
                for k in 1..<xs.count {
                    let b = cs[k][s], y = xs[k]
                    for j in i..<end { po[j] += b * y[j] }
                }
            }
            i = end
        }
    }
    // Linear in every input: each gradient is the output gradient scaled by the same
    // coefficients, itself a recorded combination, so grad-of-grad works.
    return out.recorded("per_sample_combination", terms.map(\.tensor)) { g, needs in
        (0..<cs.count).map { needs[$0] ? perSampleLinearCombination([(g, cs[$0])]) : nil }
    }
}

/// (1/N) Σ_n w[n] · mean_j (p[n, j] − q[n, j])²: the diffusion loss, MSE averaged over each
/// item's elements, then weighted per item (min-SNR) and averaged over the batch.
/// Per-item sums run serially in Double, so the value does not depend on the thread count.
public func perSampleWeightedMSE(_ prediction: Tensor, _ target: Tensor, weights: [Float]) -> Tensor {
    precondition(prediction.shape == target.shape, "weighted MSE: \(prediction.shape) vs \(target.shape)")
    precondition(!prediction.shape.isEmpty && weights.count == prediction.shape[0],
                 "weighted MSE: \(weights.count) weights for shape \(prediction.shape)")
    let n = prediction.shape[0], per = n > 0 ? prediction.count / n : 0
    let pp = prediction.data, pq = target.data
    var sums = [Double](repeating: 0, count: n)
    sums.withUnsafeMutableBufferPointer { ps in
        let ps = ps.baseAddress!
        Parallel.forRange(n, grain: Swift.max(1, (1 << 14) / Swift.max(per, 1))) { range in
            for s in range {
                var acc = 0.0
                let p = pp + s * per, q = pq + s * per
                for j in 0..<per { let d = Double(p[j] - q[j]); acc += d * d }
                ps[s] = acc
            }
        }
    }
    var loss = 0.0
    for s in 0..<n { loss += Double(weights[s]) * sums[s] }
    let scale = n > 0 && per > 0 ? 1 / (Double(per) * Double(n)) : 0
    let out = Tensor.scalar(Float(loss * scale))
    // d/dp = 2 w_n (p − q) / (per · N), times the incoming scalar gradient.
    let coef = weights.map { Float(2 * Double($0) * scale) }
    return out.recorded("weighted_mse", [prediction, target]) { g, needs in
        let gp: Tensor
        if GradMode.isEnabled {
            gp = perSampleLinearCombination([(prediction, coef), (target, coef.map { -$0 })]) * g
        } else {
            gp = Tensor(uninitialized: prediction.shape)
            let po = gp.data, gs = g.item
            Parallel.forRange(prediction.count, grain: 1 << 14) { range in
                var i = range.lowerBound
                while i < range.upperBound {
                    let s = i / per, end = Swift.min(range.upperBound, (s + 1) * per)
                    let c = coef[s] * gs
                    for j in i..<end { po[j] = c * (pp[j] - pq[j]) }
                    i = end
                }
            }
        }
        return [needs[0] ? gp : nil, needs[1] ? -gp : nil]
    }
}

/// `a` and `b` stacked along the batch axis (off the tape: classifier-free guidance runs
/// the model on [x; x] during sampling only).
func concatenatedBatch(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "batch concat: \(a.shape) vs \(b.shape)")
    var shape = a.shape
    shape[0] *= 2
    let out = Tensor(uninitialized: shape)
    out.data.update(from: a.data, count: a.count)
    (out.data + a.count).update(from: b.data, count: b.count)
    return out
}

/// The first and second halves of `x` along the batch axis (copies, off the tape).
func splitBatch(_ x: Tensor) -> (Tensor, Tensor) {
    precondition(x.shape[0] % 2 == 0, "batch split of odd batch \(x.shape)")
    var shape = x.shape
    shape[0] /= 2
    let a = Tensor(uninitialized: shape), b = Tensor(uninitialized: shape)
    a.data.update(from: x.data, count: a.count)
    b.data.update(from: x.data + a.count, count: b.count)
    return (a, b)
}

/// `x` clipped to [low, high] (off the tape: used on x0 predictions while sampling).
func clamped(_ x: Tensor, _ low: Float, _ high: Float) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let px = x.data, po = out.data
    Parallel.forRange(x.count, grain: 1 << 14) { range in
        for i in range { po[i] = Swift.min(Swift.max(px[i], low), high) }
    }
    return out
}
