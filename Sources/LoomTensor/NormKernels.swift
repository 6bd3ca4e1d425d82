/// Building blocks shared by group, layer and batch normalisation: 16-lane loads with a
/// padded tail (odd channel counts), per-column sums with fixed blocking, the activation
/// fused into group norm, and the differentiable (composite) formulas that the backward
/// passes use while a graph is being built (second order).

/// `n` floats (all 16 when n ≥ 16) as one vector; missing lanes are zero.
@inline(__always)
func loadLanes(_ p: UnsafePointer<Float>, _ n: Int) -> Float16x {
    if n >= 16 { return UnsafeRawPointer(p).loadUnaligned(as: Float16x.self) }
    var v = Float16x(repeating: 0)
    for k in 0..<n { v[k] = p[k] }
    return v
}

/// Stores the first `n` lanes of `v` (all 16 when n ≥ 16).
@inline(__always)
func storeLanes(_ v: Float16x, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n >= 16 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float16x.self); return }
    for k in 0..<n { p[k] = v[k] }
}

@inline(__always)
func loadLanes(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float16x { loadLanes(UnsafePointer(p), n) }

/// Rows summed in float per block of this many before being added to the running total:
/// the rounding error then grows with rows/64 + 64 instead of with the row count.
let columnSumBlock = 64

/// total[c] = Σ_r term(r, c) for c in 0..<width, where `term(r, c, n)` gives the 16 lanes
/// starting at column c (n of them valid). Sums each column in row order, so the result
/// depends on nothing but the data; `partial` is scratch of `width` floats.
@inline(__always)
func sumColumns(rows: Int, width: Int, total: UnsafeMutablePointer<Float>, partial: UnsafeMutablePointer<Float>,
                _ term: (_ row: Int, _ c: Int, _ n: Int) -> Float16x) {
    total.update(repeating: 0, count: width)
    var r0 = 0
    while r0 < rows {
        let r1 = min(rows, r0 + columnSumBlock)
        partial.update(repeating: 0, count: width)
        for r in r0..<r1 {
            var c = 0
            while c < width {
                let n = min(16, width - c)
                storeLanes(loadLanes(partial + c, n) + term(r, c, n), partial + c, n)
                c += 16
            }
        }
        for c in 0..<width { total[c] += partial[c] }
        r0 = r1
    }
}

/// Two column sums at once (the backward passes need Σ dz and Σ dz·x̂ together).
@inline(__always)
func sumColumnsPair(rows: Int, width: Int, total: UnsafeMutablePointer<Float>, total2: UnsafeMutablePointer<Float>,
                    partial: UnsafeMutablePointer<Float>, partial2: UnsafeMutablePointer<Float>,
                    _ term: (_ row: Int, _ c: Int, _ n: Int) -> (Float16x, Float16x)) {
    total.update(repeating: 0, count: width)
    total2.update(repeating: 0, count: width)
    var r0 = 0
    while r0 < rows {
        let r1 = min(rows, r0 + columnSumBlock)
        partial.update(repeating: 0, count: width)
        partial2.update(repeating: 0, count: width)
        for r in r0..<r1 {
            var c = 0
            while c < width {
                let n = min(16, width - c)
                let (a, b) = term(r, c, n)
                storeLanes(loadLanes(partial + c, n) + a, partial + c, n)
                storeLanes(loadLanes(partial2 + c, n) + b, partial2 + c, n)
                c += 16
            }
        }
        for c in 0..<width {
            total[c] += partial[c]
            total2[c] += partial2[c]
        }
        r0 = r1
    }
}

/// Σ term(i) over i in 0..<n with 16-lane accumulators (a row of layer norm).
@inline(__always)
func sumLanes(_ n: Int, _ term: (_ i: Int, _ lanes: Int) -> Float16x) -> Float {
    var acc = Float16x(repeating: 0)
    var i = 0
    while i < n {
        acc += term(i, min(16, n - i))
        i += 16
    }
    return acc.sum()
}

/// Sums `count` floats spaced `stride` apart in double precision (the per-block partial
/// sums of a reduction, added in block order).
@inline(__always)
func sumStrided(_ p: UnsafePointer<Float>, count: Int, stride: Int) -> Double {
    var acc = 0.0
    for i in 0..<count { acc += Double(p[i * stride]) }
    return acc
}

/// An activation fused into group norm's passes (the U-Net's GroupNorm → SiLU).
protocol NormActivation {
    /// Whether the activation is the identity (the backward then reads g directly).
    static var isIdentity: Bool { get }
    /// y = act(z).
    static func apply(_ z: Float16x) -> Float16x
    /// dL/dz from dL/dy = g at pre-activation z.
    static func gradient(_ g: Float16x, _ z: Float16x) -> Float16x
    /// act(z) with differentiable ops (the composite backward).
    static func apply(_ z: Tensor) -> Tensor
    /// dL/dz with differentiable ops.
    static func gradient(_ g: Tensor, _ z: Tensor) -> Tensor
}

enum NoActivation: NormActivation {
    static var isIdentity: Bool { true }
    @inline(__always) static func apply(_ z: Float16x) -> Float16x { z }
    @inline(__always) static func gradient(_ g: Float16x, _ z: Float16x) -> Float16x { g }
    static func apply(_ z: Tensor) -> Tensor { z }
    static func gradient(_ g: Tensor, _ z: Tensor) -> Tensor { g }
}

enum SiLUActivation: NormActivation {
    static var isIdentity: Bool { false }
    @inline(__always) static func apply(_ z: Float16x) -> Float16x { z * simdSigmoid(z) }
    @inline(__always) static func gradient(_ g: Float16x, _ z: Float16x) -> Float16x {
        let s = simdSigmoid(z)
        return g * s * (1 + z * (1 - s))
    }
    static func apply(_ z: Tensor) -> Tensor { z.silu() }
    static func gradient(_ g: Tensor, _ z: Tensor) -> Tensor {
        let s = z.sigmoid()
        return g * (s * (1 + z * (1 - s)))
    }
}

/// The differentiable pieces of a normalisation, on a view `v` of the input whose axes of
/// extent 1 in `statShape` are the ones reduced over.
enum NormComposite {
    /// x̂ = (v − mean)/std and std = √(var + eps), statistics over the reduced axes.
    static func normalize(_ v: Tensor, statShape: [Int], eps: Float) -> (xhat: Tensor, std: Tensor) {
        let inv = 1 / Float(v.count / max(1, statShape.reduce(1, *)))
        let centred = v - v.summed(to: statShape) * inv
        let std = ((centred * centred).summed(to: statShape) * inv + eps).sqrt()
        return (centred / std, std)
    }

    /// Gradients of y = x̂·w + b given dL/dy = `gz` (same shape as `xhat`): dx through the
    /// statistics (means over the reduced axes), dw and db summed to `affineShape`.
    /// `weight` is already shaped to broadcast against `xhat`.
    static func backward(gz: Tensor, xhat: Tensor, std: Tensor, weight: Tensor?, statShape: [Int],
                         affineShape: [Int], throughStatistics: Bool,
                         needX: Bool, needW: Bool, needB: Bool) -> (dx: Tensor?, dw: Tensor?, db: Tensor?) {
        let dw = needW ? (gz * xhat).summed(to: affineShape) : nil
        let db = needB ? gz.summed(to: affineShape) : nil
        guard needX else { return (nil, dw, db) }
        let dxhat = weight.map { gz * $0 } ?? gz
        guard throughStatistics else { return (dxhat / std, dw, db) }
        let inv = 1 / Float(xhat.count / max(1, statShape.reduce(1, *)))
        let meanDxhat = dxhat.summed(to: statShape) * inv
        let meanDxhatXhat = (dxhat * xhat).summed(to: statShape) * inv
        return ((dxhat - meanDxhat - xhat * meanDxhatXhat) / std, dw, db)
    }
}

/// Where weight and bias sit in an op's input list (they are optional).
struct AffineInputs {
    let inputs: [Tensor]
    let weightIndex: Int?
    let biasIndex: Int?

    init(_ x: Tensor, _ weight: Tensor?, _ bias: Tensor?) {
        var inputs = [x]
        var wi: Int?, bi: Int?
        if let weight { wi = inputs.count; inputs.append(weight) }
        if let bias { bi = inputs.count; inputs.append(bias) }
        self.inputs = inputs
        weightIndex = wi
        biasIndex = bi
    }

    func needW(_ needs: [Bool]) -> Bool { weightIndex.map { needs[$0] } ?? false }
    func needB(_ needs: [Bool]) -> Bool { biasIndex.map { needs[$0] } ?? false }

    /// The backward result in input order, each gradient in its input's shape.
    func gradients(dx: Tensor?, dw: Tensor?, db: Tensor?) -> [Tensor?] {
        var out: [Tensor?] = [dx.map { shaped($0, like: inputs[0]) }]
        if let weightIndex { out.append(dw.map { shaped($0, like: inputs[weightIndex]) }) }
        if let biasIndex { out.append(db.map { shaped($0, like: inputs[biasIndex]) }) }
        return out
    }

    private func shaped(_ t: Tensor, like input: Tensor) -> Tensor {
        t.shape == input.shape ? t : t.reshaped(input.shape)
    }
}

/// Checks that an affine parameter is a vector of `channels` values.
func checkAffine(_ t: Tensor?, channels: Int, _ what: String, _ op: String) {
    if let t {
        precondition(t.count == channels, "\(op): \(what) has shape \(t.shape), expected [\(channels)]")
    }
}
