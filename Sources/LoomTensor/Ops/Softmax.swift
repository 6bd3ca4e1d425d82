import Foundation

/// Softmax, log-softmax and cross-entropy. Rows are shifted by their maximum before the
/// vectorised exp, so no input overflows; backward uses fused row kernels when the tape is
/// off and the composite formulas (which are differentiable again) when building a graph.

/// Row kernels over `n` values spaced `inner` apart; shared with attention.
enum SoftmaxKernels {
    /// Largest of `n` contiguous floats (16-lane running maximum).
    @inline(__always)
    static func rowMax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = Float16x(repeating: -.infinity)
        var i = 0
        while i + 16 <= n {
            // A masked select: the generic `pointwiseMax` and `max()` compile to scalar code.
            let v = UnsafeRawPointer(p + i).loadUnaligned(as: Float16x.self)
            acc = acc.replacing(with: v, where: v .> acc)
            i += 16
        }
        var m = -Float.infinity
        for k in 0..<16 { m = Swift.max(m, acc[k]) }
        while i < n { m = Swift.max(m, p[i]); i += 1 }
        return m
    }

    /// Σ a[i]·b[i] over `n` contiguous floats (16-lane accumulators, fixed order).
    @inline(__always)
    static func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = Float16x(repeating: 0)
        var i = 0
        while i + 16 <= n {
            acc += UnsafeRawPointer(a + i).loadUnaligned(as: Float16x.self)
                 * UnsafeRawPointer(b + i).loadUnaligned(as: Float16x.self)
            i += 16
        }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// Σ exp(x − m) over `n` contiguous floats, also storing the exps into `y` when given
    /// (y may be x). Every exp of this file goes through this one small loop, which keeps
    /// simdExp inlined (large kernels had called it out of line) and handles the tail once.
    static func expSum(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>?, _ n: Int, shift m: Float) -> Float {
        let mv = Float16x(repeating: m)
        var acc = Float16x(repeating: 0)
        var i = 0
        while i < n {
            let lanes = Swift.min(16, n - i)
            var v = Float16x(repeating: -.infinity)
            if lanes == 16 {
                v = UnsafeRawPointer(x + i).loadUnaligned(as: Float16x.self)
            } else {
                for k in 0..<lanes { v[k] = x[i + k] }
            }
            // Padding lanes (and true −∞ inputs) contribute exactly 0.
            let e = simdExp(v - mv).replacing(with: 0, where: v .== -.infinity)
            if let y {
                if lanes == 16 {
                    UnsafeMutableRawPointer(y + i).storeBytes(of: e, as: Float16x.self)
                } else {
                    for k in 0..<lanes { y[i + k] = e[k] }
                }
            }
            acc += e
            i += 16
        }
        return acc.sum()
    }

    /// y = softmax(x) (log = false) or log-softmax(x) over one contiguous row; y may be x.
    static func forwardRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, log: Bool) {
        if n == 0 { return }
        let m = rowMax(x, n)
        if log {
            // Only the sum is kept: y may alias x.
            let shift = m + Foundation.log(expSum(x, nil, n, shift: m))
            for j in 0..<n { y[j] = x[j] - shift }
        } else {
            let inv = 1 / expSum(x, y, n, shift: m)
            for j in 0..<n { y[j] *= inv }
        }
    }

    /// Input gradient of a contiguous row: softmax dx = y ⊙ (g − ⟨g, y⟩),
    /// log-softmax dx = g − exp(y) · Σg.
    @inline(__always)
    static func backwardRow(_ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                            _ n: Int, log: Bool) {
        if log {
            let s = simdSum(g, n)
            _ = expSum(y, dx, n, shift: 0)
            for j in 0..<n { dx[j] = g[j] - dx[j] * s }
        } else {
            let dot = rowDot(g, y, n)
            for j in 0..<n { dx[j] = y[j] * (g[j] - dot) }
        }
    }

    /// The softmax axis seen as (outer, n, inner): n values spaced `inner` apart.
    static func layout(_ shape: [Int], axis: Int) -> (outer: Int, n: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// Softmax or log-softmax of `x` along `axis` into `y`.
    static func forward(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, shape: [Int], axis: Int, log: Bool) {
        let (outer, n, inner) = layout(shape, axis: axis)
        if n == 0 || outer * inner == 0 { return }
        if inner == 1 {
            Parallel.forRange(outer, grain: Swift.max(1, 4096 / n)) { r in
                for o in r { forwardRow(x + o * n, y + o * n, n, log: log) }
            }
            return
        }
        // Strided axis: each (outer) block is n rows of `inner` lanes, reduced row by row.
        Parallel.forRange(outer, grain: Swift.max(1, 4096 / (n * inner))) { r in
            let mx = UnsafeMutablePointer<Float>.allocate(capacity: 2 * inner)
            defer { mx.deallocate() }
            let sum = mx + inner
            for o in r {
                let xs = x + o * n * inner, ys = y + o * n * inner
                mx.update(from: xs, count: inner)
                for j in 1..<n { let row = xs + j * inner; for i in 0..<inner { mx[i] = Swift.max(mx[i], row[i]) } }
                for j in 0..<n { let xr = xs + j * inner, yr = ys + j * inner; for i in 0..<inner { yr[i] = xr[i] - mx[i] } }
                if log {
                    sum.update(repeating: 0, count: inner)
                    for j in 0..<n {
                        let yr = ys + j * inner
                        _ = expSum(yr, mx, inner, shift: 0)  // mx is free now: reuse it as the exp row
                        for i in 0..<inner { sum[i] += mx[i] }
                    }
                    for i in 0..<inner { sum[i] = Foundation.log(sum[i]) }
                    for j in 0..<n { let yr = ys + j * inner; for i in 0..<inner { yr[i] -= sum[i] } }
                } else {
                    _ = expSum(ys, ys, n * inner, shift: 0)
                    sum.update(from: ys, count: inner)
                    for j in 1..<n { let yr = ys + j * inner; for i in 0..<inner { sum[i] += yr[i] } }
                    for i in 0..<inner { sum[i] = 1 / sum[i] }
                    for j in 0..<n { let yr = ys + j * inner; for i in 0..<inner { yr[i] *= sum[i] } }
                }
            }
        }
    }

    /// The fused first-order input gradient from the saved output `y` and `g`.
    static func backward(_ y: Tensor, _ g: Tensor, axis: Int, log: Bool) -> Tensor {
        let dx = Tensor(uninitialized: y.shape)
        let (outer, n, inner) = layout(y.shape, axis: axis)
        if n == 0 || outer * inner == 0 { return dx }
        let py = y.data, pg = g.data, pd = dx.data
        if inner == 1 {
            Parallel.forRange(outer, grain: Swift.max(1, 4096 / n)) { r in
                for o in r { backwardRow(py + o * n, pg + o * n, pd + o * n, n, log: log) }
            }
            return dx
        }
        Parallel.forRange(outer, grain: Swift.max(1, 4096 / (n * inner))) { r in
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: inner)
            defer { acc.deallocate() }
            for o in r {
                let ys = py + o * n * inner, gs = pg + o * n * inner, ds = pd + o * n * inner
                acc.update(repeating: 0, count: inner)
                for j in 0..<n {
                    let yr = ys + j * inner, gr = gs + j * inner
                    if log { for i in 0..<inner { acc[i] += gr[i] } } else { for i in 0..<inner { acc[i] += gr[i] * yr[i] } }
                }
                if log {
                    _ = expSum(ys, ds, n * inner, shift: 0)
                    for j in 0..<n { let dr = ds + j * inner, gr = gs + j * inner; for i in 0..<inner { dr[i] = gr[i] - dr[i] * acc[i] } }
                } else {
                    for j in 0..<n {
                        let yr = ys + j * inner, gr = gs + j * inner, dr = ds + j * inner
                        for i in 0..<inner { dr[i] = yr[i] * (gr[i] - acc[i]) }
                    }
                }
            }
        }
        return dx
    }
}

extension Tensor {
    /// exp(x) / Σ exp(x) along `axis` (negative axes allowed).
    public func softmax(axis: Int = -1) -> Tensor {
        let a = AxisMath.resolve(axis, rank: rank)
        let out = Tensor(uninitialized: shape)
        SoftmaxKernels.forward(data, out.data, shape: shape, axis: a, log: false)
        let y = out.detached()
        var keep = shape
        keep[a] = 1
        return out.recorded("softmax", [self]) { g, _ in
            if GradMode.isEnabled {
                let s = self.softmax(axis: a)
                return [s * (g - (g * s).summed(to: keep))]
            }
            return [SoftmaxKernels.backward(y, g, axis: a, log: false)]
        }
    }

    /// x − log Σ exp(x) along `axis` (negative axes allowed).
    public func logSoftmax(axis: Int = -1) -> Tensor {
        let a = AxisMath.resolve(axis, rank: rank)
        let out = Tensor(uninitialized: shape)
        SoftmaxKernels.forward(data, out.data, shape: shape, axis: a, log: true)
        let y = out.detached()
        var keep = shape
        keep[a] = 1
        return out.recorded("log_softmax", [self]) { g, _ in
            if GradMode.isEnabled { return [g - self.softmax(axis: a) * g.summed(to: keep)] }
            return [SoftmaxKernels.backward(y, g, axis: a, log: true)]
        }
    }
}

/// Mean cross-entropy of `logits` [N, C] against class indices `targets` (N of them), with
/// PyTorch's label smoothing: the target distribution is (1 − ε)·onehot + ε/C.
public func crossEntropyLoss(_ logits: Tensor, _ targets: [Int], labelSmoothing: Float = 0) -> Tensor {
    precondition(logits.rank == 2, "crossEntropyLoss: logits must be [N, C], got \(logits.shape)")
    let rows = logits.shape[0], classes = logits.shape[1]
    precondition(targets.count == rows && rows > 0, "crossEntropyLoss: \(targets.count) targets for \(rows) rows")
    precondition(targets.allSatisfy { $0 >= 0 && $0 < classes }, "crossEntropyLoss: target out of 0..<\(classes)")
    precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropyLoss: label smoothing outside [0, 1]")
    let lsm = Tensor(uninitialized: logits.shape)
    SoftmaxKernels.forward(logits.data, lsm.data, shape: logits.shape, axis: 1, log: true)
    let onWeight = 1 - labelSmoothing, offWeight = labelSmoothing / Float(classes)
    // Serial over rows in double precision: the loss is one number, its order fixed.
    var total = 0.0
    for i in 0..<rows {
        let row = lsm.data + i * classes
        var loss = -Double(onWeight) * Double(row[targets[i]])
        if labelSmoothing != 0 { loss -= Double(offWeight) * Double(simdSum(row, classes)) }
        total += loss
    }
    let out = Tensor.scalar(Float(total / Double(rows)))
    return out.recorded("cross_entropy", [logits]) { g, _ in
        // d/dlogits = (softmax − target distribution) · g / N.
        let scale = 1 / Float(rows)
        if GradMode.isEnabled {
            let q = Tensor(repeating: offWeight, shape: [rows, classes])
            for (i, t) in targets.enumerated() { q.data[i * classes + t] += onWeight }
            return [(logits.softmax(axis: 1) - q) * (g * scale)]
        }
        let dx = Tensor(uninitialized: [rows, classes])
        let gs = g.item * scale
        let pl = lsm.data, pd = dx.data
        targets.withUnsafeBufferPointer { tg in
            Parallel.forRange(rows, grain: Swift.max(1, 4096 / classes)) { r in
                for i in r {
                    let d = pd + i * classes
                    _ = SoftmaxKernels.expSum(pl + i * classes, d, classes, shift: 0)
                    for c in 0..<classes { d[c] = (d[c] - offWeight) * gs }
                    d[tg[i]] -= onWeight * gs
                }
            }
        }
        return [dx]
    }
}
