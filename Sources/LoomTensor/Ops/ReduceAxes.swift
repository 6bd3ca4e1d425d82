/// Reductions over chosen axes: sum, mean, max (with its argmax gather/scatter pair) and
/// variance. A sum over one contiguous block of axes (the common case: last axis, NHWC
/// spatial axes, batch axis) runs a SIMD kernel on an [outer, reduced, inner] view; other
/// axis sets go through `summed(to:)`. Each output adds its elements in an order fixed by
/// the shape alone, so results never depend on the thread count.

/// A tensor seen as [outer, length, inner] around one axis (or one block of axes).
struct AxisLayout {
    var outer: Int
    var length: Int
    var inner: Int
}

extension Tensor {
    /// `axes` as sorted, distinct, non-negative axes (-1 = last).
    func normalizedAxes(_ axes: [Int]) -> [Int] {
        let r = rank
        let normalized = axes.map { a -> Int in
            let n = a < 0 ? a + r : a
            precondition(n >= 0 && n < r, "axis \(a) is out of range for shape \(shape)")
            return n
        }
        return Array(Set(normalized)).sorted()
    }

    /// The shape with `axes` set to 1 (keepDims) or removed.
    func reducedShape(_ axes: [Int], keepDims: Bool) -> [Int] {
        keepDims ? shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
                 : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    }

    /// Sum over `axes` (negative counts from the end; an empty list reduces nothing, as
    /// NumPy's `axis=()`).
    public func sum(axes: [Int], keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes)
        let inShape = shape, keepShape = reducedShape(ax, keepDims: true)
        let outShape = keepDims ? keepShape : reducedShape(ax, keepDims: false)
        let out: Tensor
        if let l = Tensor.blockLayout(shape, reducing: ax) {
            out = Tensor(uninitialized: outShape)
            sumMiddleAxis(data, out.data, l)
        } else {
            let s = noGrad { summed(to: keepShape) }
            out = Tensor(shape: outShape, storage: s.storage)
        }
        return out.recorded("sum_axes", [self]) { g, _ in [g.reshaped(keepShape).expanded(to: inShape)] }
    }

    /// Mean over `axes` (negative counts from the end).
    public func mean(axes: [Int], keepDims: Bool = false) -> Tensor {
        let n = normalizedAxes(axes).reduce(1) { $0 * shape[$1] }
        return sum(axes: axes, keepDims: keepDims) * (1 / Float(n))
    }

    /// Largest element along `axis`; the gradient flows to the first maximal element only
    /// (NaN counts as largest, so it propagates).
    public func max(axis: Int, keepDims: Bool = false) -> Tensor {
        let a = normalizedAxes([axis])[0]
        precondition(shape[a] > 0, "max: axis \(axis) of shape \(shape) is empty")
        let l = AxisLayout(outer: shape[..<a].reduce(1, *), length: shape[a], inner: shape[(a + 1)...].reduce(1, *))
        let out = Tensor(uninitialized: reducedShape([a], keepDims: keepDims))
        var idx = [Int32](repeating: 0, count: l.outer * l.inner)
        idx.withUnsafeMutableBufferPointer { argmaxAlongAxis(data, out.data, $0.baseAddress!, l) }
        let indices = idx, inShape = shape
        return out.recorded("max", [self]) { g, _ in [scatterAlongAxis(g, indices, l, inShape)] }
    }

    /// Variance over `axes`: mean squared deviation, divided by n - 1 instead of n when
    /// `unbiased` (Bessel's correction).
    public func variance(axes: [Int], keepDims: Bool = false, unbiased: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes)
        let n = ax.reduce(1) { $0 * shape[$1] }
        let norm = 1 / Float(n - (unbiased ? 1 : 0))
        let keepShape = reducedShape(ax, keepDims: true)
        // Two passes (mean, then squared deviations): no cancellation for large means.
        let (out, mu) = noGrad { () -> (Tensor, Tensor) in
            let mu = mean(axes: ax, keepDims: true)
            let d = self - mu
            return ((d * d).sum(axes: ax, keepDims: keepDims) * norm, mu)
        }
        return out.recorded("variance", [self]) { g, _ in
            let gk = g.reshaped(keepShape)
            if GradMode.isEnabled { return [(self - self.mean(axes: ax, keepDims: true)) * gk * (2 * norm)] }
            return [(self - mu) * (gk * (2 * norm))]
        }
    }

    /// [outer, reduced, inner] when the non-unit reduced axes form one block among the
    /// non-unit axes; nil otherwise.
    static func blockLayout(_ shape: [Int], reducing axes: [Int]) -> AxisLayout? {
        var l = AxisLayout(outer: 1, length: 1, inner: 1)
        var phase = 0  // 0: before the block, 1: inside, 2: after
        for (d, n) in shape.enumerated() where n != 1 {
            let reduced = axes.contains(d)
            if reduced {
                if phase == 2 { return nil }
                phase = 1
                l.length *= n
            } else if phase == 0 {
                l.outer *= n
            } else {
                phase = 2
                l.inner *= n
            }
        }
        return l
    }
}

/// dst[0..<n] += src[0..<n] with SIMD16 loads.
@inline(__always)
func addRow(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var j = 0
    while j + 16 <= n {
        let a = UnsafeRawPointer(dst + j).loadUnaligned(as: Float16x.self)
        let b = UnsafeRawPointer(src + j).loadUnaligned(as: Float16x.self)
        UnsafeMutableRawPointer(dst + j).storeBytes(of: a + b, as: Float16x.self)
        j += 16
    }
    while j < n { dst[j] += src[j]; j += 1 }
}

/// Calls `body(o, j0, j1)` for the pieces of a flat range of [outer, inner] outputs that
/// lie in one outer row.
@inline(__always)
func forEachRowPiece(_ range: Range<Int>, inner: Int, _ body: (Int, Int, Int) -> Void) {
    var i = range.lowerBound
    while i < range.upperBound {
        let o = i / inner, j0 = i % inner
        let j1 = Swift.min(inner, j0 + range.upperBound - i)
        body(o, j0, j1)
        i += j1 - j0
    }
}

/// out[o, j] = Σ_k x[o, k, j]; k runs in order for every output.
func sumMiddleAxis(_ x: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ l: AxisLayout) {
    let r = l.length, inner = l.inner
    if inner == 1 {
        Parallel.forRange(l.outer, grain: Swift.max(1, (1 << 14) / Swift.max(r, 1))) { range in
            for o in range { out[o] = simdSum(x + o * r, r) }
        }
        return
    }
    Parallel.forRange(l.outer * inner, grain: Swift.max(64, (1 << 14) / Swift.max(r, 1))) { range in
        forEachRowPiece(range, inner: inner) { o, j0, j1 in
            let dst = out + o * inner + j0
            dst.update(repeating: 0, count: j1 - j0)
            for k in 0..<r { addRow(dst, x + (o * r + k) * inner + j0, j1 - j0) }
        }
    }
}

/// Max along the middle axis of `l` and the index of its first occurrence.
func argmaxAlongAxis(_ x: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                     _ idx: UnsafeMutablePointer<Int32>, _ l: AxisLayout) {
    let len = l.length, inner = l.inner
    if inner == 1 {
        // Rows are contiguous: keep the running best in registers.
        Parallel.forRange(l.outer, grain: Swift.max(1, (1 << 14) / len)) { range in
            for o in range {
                let row = x + o * len
                var b = row[0], at = 0
                for k in 1..<len {
                    let v = row[k]
                    if v > b || (v.isNaN && !b.isNaN) { b = v; at = k }
                }
                out[o] = b
                idx[o] = Int32(at)
            }
        }
        return
    }
    Parallel.forRange(l.outer * inner, grain: Swift.max(16, (1 << 14) / len)) { range in
        forEachRowPiece(range, inner: inner) { o, j0, j1 in
            let best = out + o * inner, at = idx + o * inner
            let row0 = x + o * len * inner
            for j in j0..<j1 { best[j] = row0[j]; at[j] = 0 }
            for k in 1..<len {
                let row = row0 + k * inner
                for j in j0..<j1 {
                    let v = row[j], b = best[j]
                    if v > b || (v.isNaN && !b.isNaN) { best[j] = v; at[j] = Int32(k) }
                }
            }
        }
    }
}

/// Zeros of `shape` with g[o, j] placed at [o, idx[o, j], j]: the gradient of a selection
/// along an axis. Its own gradient is the matching gather, so max has second order.
func scatterAlongAxis(_ g: Tensor, _ idx: [Int32], _ l: AxisLayout, _ shape: [Int]) -> Tensor {
    let out = Tensor.zeros(shape)
    let po = out.data, pg = g.data, inner = l.inner, len = l.length
    idx.withUnsafeBufferPointer { ib in
        let pi = ib.baseAddress!
        Parallel.forRange(l.outer * inner, grain: 1 << 14) { range in
            for i in range {
                let o = i / inner, j = i - o * inner
                po[(o * len + Int(pi[i])) * inner + j] = pg[i]
            }
        }
    }
    let gShape = g.shape
    return out.recorded("scatter_axis", [g]) { gg, _ in [gatherAlongAxis(gg, idx, l, gShape)] }
}

/// x[o, idx[o, j], j] with shape `shape`: the adjoint of `scatterAlongAxis`.
func gatherAlongAxis(_ x: Tensor, _ idx: [Int32], _ l: AxisLayout, _ shape: [Int]) -> Tensor {
    let out = Tensor(uninitialized: shape)
    let po = out.data, px = x.data, inner = l.inner, len = l.length
    idx.withUnsafeBufferPointer { ib in
        let pi = ib.baseAddress!
        Parallel.forRange(l.outer * inner, grain: 1 << 14) { range in
            for i in range {
                let o = i / inner, j = i - o * inner
                po[i] = px[(o * len + Int(pi[i])) * inner + j]
            }
        }
    }
    let xShape = x.shape
    return out.recorded("gather_axis", [x]) { g, _ in [scatterAlongAxis(g, idx, l, xShape)] }
}
