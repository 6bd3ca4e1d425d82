/// Lane functions as types. A large closure handed to `mapSIMD` is often left out of line,
/// and then every 16-lane block crosses a call that passes the vector as four 128-bit
/// pieces (measured 4–10× slower for erf and GELU with AVX-512). A generic kernel over a
/// `LaneMap` type is specialised per op and inlines the lane function into the loop.

/// A function applied lane-wise to one SIMD16 block.
protocol LaneMap {
    func callAsFunction(_ x: Float16x) -> Float16x
}

/// A function applied lane-wise to two SIMD16 blocks (fused backward kernels).
protocol LaneMap2 {
    func callAsFunction(_ a: Float16x, _ b: Float16x) -> Float16x
}

/// out = f(x) lane-wise, split across threads for large tensors.
@inline(__always)
func mapLanes<F: LaneMap>(_ x: Tensor, _ f: F) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let px = x.data, po = out.data
    Parallel.forRange(x.count, grain: 1 << 13) { r in
        var i = r.lowerBound
        while i + 16 <= r.upperBound {
            let v = UnsafeRawPointer(px + i).loadUnaligned(as: Float16x.self)
            UnsafeMutableRawPointer(po + i).storeBytes(of: f(v), as: Float16x.self)
            i += 16
        }
        if i < r.upperBound {
            var v = Float16x(repeating: 0)
            for k in 0..<(r.upperBound - i) { v[k] = px[i + k] }
            let y = f(v)
            for k in 0..<(r.upperBound - i) { po[i + k] = y[k] }
        }
    }
    return out
}

/// out = f(a, b) lane-wise for two tensors of the same shape.
@inline(__always)
func mapLanes<F: LaneMap2>(_ a: Tensor, _ b: Tensor, _ f: F) -> Tensor {
    precondition(a.shape == b.shape, "mapLanes: shapes \(a.shape) and \(b.shape) differ")
    let out = Tensor(uninitialized: a.shape)
    let pa = a.data, pb = b.data, po = out.data
    Parallel.forRange(a.count, grain: 1 << 13) { r in
        var i = r.lowerBound
        while i + 16 <= r.upperBound {
            let va = UnsafeRawPointer(pa + i).loadUnaligned(as: Float16x.self)
            let vb = UnsafeRawPointer(pb + i).loadUnaligned(as: Float16x.self)
            UnsafeMutableRawPointer(po + i).storeBytes(of: f(va, vb), as: Float16x.self)
            i += 16
        }
        if i < r.upperBound {
            var va = Float16x(repeating: 0), vb = va
            for k in 0..<(r.upperBound - i) { va[k] = pa[i + k]; vb[k] = pb[i + k] }
            let y = f(va, vb)
            for k in 0..<(r.upperBound - i) { po[i + k] = y[k] }
        }
    }
    return out
}

/// x limited to [lo, hi] with masks (SIMD `clamped` compiles to slow generic code).
struct ClampLanes: LaneMap {
    let lo: Float, hi: Float
    @inline(__always) func callAsFunction(_ x: Float16x) -> Float16x {
        x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    }
}

/// erf(x).
struct ErfLanes: LaneMap {
    @inline(__always) func callAsFunction(_ x: Float16x) -> Float16x { simdErf(x) }
}

/// g · d/dx erf(x) = g · 2/√π · e^(-x²).
struct ErfGradLanes: LaneMap2 {
    @inline(__always) func callAsFunction(_ g: Float16x, _ x: Float16x) -> Float16x {
        g * 1.128_379_167_095_512_6 * simdExp(-x * x)
    }
}

/// Exact GELU x·Φ(x).
struct GELULanes: LaneMap {
    @inline(__always) func callAsFunction(_ x: Float16x) -> Float16x {
        0.5 * x * (1 + simdErf(x * geluSqrtHalf))
    }
}

/// g · d/dx x·Φ(x).
struct GELUGradLanes: LaneMap2 {
    @inline(__always) func callAsFunction(_ g: Float16x, _ x: Float16x) -> Float16x { g * geluExactDerivative(x) }
}

/// Tanh-approximated GELU.
struct GELUTanhLanes: LaneMap {
    @inline(__always) func callAsFunction(_ x: Float16x) -> Float16x {
        let u = geluSqrtTwoOverPi * x * (1 + geluCubic * x * x)
        return 0.5 * x * (1 + simdTanh(u))
    }
}

/// g · d/dx of the tanh-approximated GELU.
struct GELUTanhGradLanes: LaneMap2 {
    @inline(__always) func callAsFunction(_ g: Float16x, _ x: Float16x) -> Float16x { g * geluTanhDerivative(x) }
}

/// Per-element BCE on logits: max(x, 0) - x·t + log(1 + e^-|x|).
struct BCELanes: LaneMap2 {
    @inline(__always) func callAsFunction(_ x: Float16x, _ t: Float16x) -> Float16x {
        x.replacing(with: 0, where: x .< 0) - x * t + simdLog1pUnit(simdExp(-simdAbs(x)))
    }
}

/// (σ(x) - t) · s: the BCE gradient for a scalar incoming gradient s.
struct BCEGradLanes: LaneMap2 {
    let s: Float
    @inline(__always) func callAsFunction(_ x: Float16x, _ t: Float16x) -> Float16x { (simdSigmoid(x) - t) * s }
}
