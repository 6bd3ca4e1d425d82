/// Broadcasting binary arithmetic (add, sub, mul, div), scalar arithmetic, and the two
/// shape-moving ops their gradients need: `expanded(to:)` and `summed(to:)`.

protocol BinaryKernel { static func apply(_ a: Float, _ b: Float) -> Float }
enum AddKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
enum DivKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a / b } }

/// out = K(a, b) with broadcasting; no tape.
func broadcastBinary<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, _: K.Type) -> Tensor {
    guard let shape = broadcastShape(a.shape, b.shape) else {
        preconditionFailure("shapes \(a.shape) and \(b.shape) do not broadcast")
    }
    let out = Tensor(uninitialized: shape)
    let po = out.data, pa = a.data, pb = b.data
    if a.shape == b.shape {
        Parallel.forRange(out.count, grain: 1 << 14) { r in
            for i in r { po[i] = K.apply(pa[i], pb[i]) }
        }
        return out
    }
    let rank = shape.count
    let rows = StridedRows(shape: shape, strides: [
        broadcastStrides(shape, rank: rank, outShape: shape),
        broadcastStrides(a.shape, rank: rank, outShape: shape),
        broadcastStrides(b.shape, rank: rank, outShape: shape),
    ])
    let n = rows.innerCount, sa = rows.innerStride(1), sb = rows.innerStride(2)
    Parallel.forRange(rows.rowCount, grain: max(1, (1 << 14) / n)) { range in
        rows.forEachRow(range) { o0, o1, o2 in
            let o = po + o0, x = pa + o1, y = pb + o2
            if sa == 1 && sb == 1 {
                for i in 0..<n { o[i] = K.apply(x[i], y[i]) }
            } else if sb == 0 {
                let v = y[0]
                for i in 0..<n { o[i] = K.apply(x[i * sa], v) }
            } else {
                let v = x[0]
                for i in 0..<n { o[i] = K.apply(v, y[i * sb]) }
            }
        }
    }
    return out
}

extension Tensor {
    /// `self` broadcast to `shape` (a copy).
    public func expanded(to shape: [Int]) -> Tensor {
        if shape == self.shape { return self }
        precondition(broadcastShape(self.shape, shape) == shape, "cannot expand \(self.shape) to \(shape)")
        let out = Tensor(uninitialized: shape)
        let rows = StridedRows(shape: shape, strides: [
            broadcastStrides(shape, rank: shape.count, outShape: shape),
            broadcastStrides(self.shape, rank: shape.count, outShape: shape),
        ])
        let n = rows.innerCount, s = rows.innerStride(1), po = out.data, pi = data
        Parallel.forRange(rows.rowCount, grain: Swift.max(1, (1 << 14) / n)) { range in
            rows.forEachRow(range) { o0, o1, _ in
                let o = po + o0, x = pi + o1
                if s == 1 { o.update(from: x, count: n) } else { o.update(repeating: x[0], count: n) }
            }
        }
        let inShape = self.shape
        return out.recorded("expand", [self]) { g, _ in [g.summed(to: inShape)] }
    }

    /// Sums `self` over the axes where `shape` has extent 1 (or lacks leading axes): the
    /// adjoint of broadcasting.
    public func summed(to shape: [Int]) -> Tensor {
        if shape == self.shape { return self }
        precondition(broadcastShape(shape, self.shape) == self.shape, "cannot sum \(self.shape) to \(shape)")
        let out = Tensor.zeros(shape)
        let rank = self.shape.count
        let rows = StridedRows(shape: self.shape, strides: [
            broadcastStrides(self.shape, rank: rank, outShape: self.shape),
            broadcastStrides(shape, rank: rank, outShape: self.shape),
        ])
        let n = rows.innerCount, s = rows.innerStride(1), po = out.data, pi = data
        // Every output element sums its inputs in row order, so results never depend on the
        // thread count: threads only split the leading axis when it is kept (its indices own
        // disjoint outputs, e.g. [N, T, D] summed to [N, 1, D]).
        let leading = rows.shape.count > 1 && rows.strides[1][0] != 0 ? rows.shape[0] : 1
        let rowsPerLeading = rows.rowCount / leading
        Parallel.forRange(leading, grain: Swift.max(1, (1 << 15) / Swift.max(1, rowsPerLeading * n))) { range in
            rows.forEachRow(range.lowerBound * rowsPerLeading..<range.upperBound * rowsPerLeading) { o0, o1, _ in
                let x = pi + o0, o = po + o1
                if s == 1 {
                    for i in 0..<n { o[i] += x[i] }
                } else {
                    var acc: Float = 0
                    for i in 0..<n { acc += x[i] }
                    o[0] += acc
                }
            }
        }
        let inShape = self.shape
        return out.recorded("sum_to", [self]) { g, _ in [g.expanded(to: inShape)] }
    }

    /// The same elements with another shape (shares storage; one axis may be -1).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var shape = newShape
        if let i = shape.firstIndex(of: -1) {
            let known = shape.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(self.shape) to \(newShape)")
            shape[i] = count / known
        }
        precondition(shape.reduce(1, *) == count, "cannot reshape \(self.shape) (\(count) elements) to \(newShape)")
        let inShape = self.shape
        return Tensor(shape: shape, storage: storage)
            .recorded("reshape", [self]) { g, _ in [g.reshaped(inShape)] }
    }
}

/// Elementwise sum with broadcasting.
public func + (a: Tensor, b: Tensor) -> Tensor {
    broadcastBinary(a, b, AddKernel.self).recorded("add", [a, b]) { g, needs in
        [needs[0] ? g.summed(to: a.shape) : nil, needs[1] ? g.summed(to: b.shape) : nil]
    }
}

/// Elementwise difference with broadcasting.
public func - (a: Tensor, b: Tensor) -> Tensor {
    broadcastBinary(a, b, SubKernel.self).recorded("sub", [a, b]) { g, needs in
        [needs[0] ? g.summed(to: a.shape) : nil, needs[1] ? (-g).summed(to: b.shape) : nil]
    }
}

/// Elementwise product with broadcasting.
public func * (a: Tensor, b: Tensor) -> Tensor {
    broadcastBinary(a, b, MulKernel.self).recorded("mul", [a, b]) { g, needs in
        [needs[0] ? (g * b).summed(to: a.shape) : nil, needs[1] ? (g * a).summed(to: b.shape) : nil]
    }
}

/// Elementwise quotient with broadcasting.
public func / (a: Tensor, b: Tensor) -> Tensor {
    broadcastBinary(a, b, DivKernel.self).recorded("div", [a, b]) { g, needs in
        [needs[0] ? (g / b).summed(to: a.shape) : nil,
         needs[1] ? (-(g * a) / (b * b)).summed(to: b.shape) : nil]
    }
}

/// y = x·scale + shift elementwise; the kernel behind every tensor–scalar op.
func affine(_ x: Tensor, scale: Float, shift: Float, name: String) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let po = out.data, px = x.data
    Parallel.forRange(x.count, grain: 1 << 14) { r in
        for i in r { po[i] = px[i] * scale + shift }
    }
    return out.recorded(name, [x]) { g, _ in [scale == 1 ? g : g * scale] }
}

/// Negation.
public prefix func - (x: Tensor) -> Tensor { affine(x, scale: -1, shift: 0, name: "neg") }
/// Tensor plus scalar.
public func + (x: Tensor, s: Float) -> Tensor { affine(x, scale: 1, shift: s, name: "add_scalar") }
/// Scalar plus tensor.
public func + (s: Float, x: Tensor) -> Tensor { affine(x, scale: 1, shift: s, name: "add_scalar") }
/// Tensor minus scalar.
public func - (x: Tensor, s: Float) -> Tensor { affine(x, scale: 1, shift: -s, name: "sub_scalar") }
/// Scalar minus tensor.
public func - (s: Float, x: Tensor) -> Tensor { affine(x, scale: -1, shift: s, name: "rsub_scalar") }
/// Tensor times scalar.
public func * (x: Tensor, s: Float) -> Tensor { affine(x, scale: s, shift: 0, name: "mul_scalar") }
/// Scalar times tensor.
public func * (s: Float, x: Tensor) -> Tensor { affine(x, scale: s, shift: 0, name: "mul_scalar") }
/// Tensor divided by scalar.
public func / (x: Tensor, s: Float) -> Tensor { affine(x, scale: 1 / s, shift: 0, name: "div_scalar") }
