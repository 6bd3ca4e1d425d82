/// Vectorised transcendental functions over `SIMD16<Float>` (a scalar `exp` is about 6×
/// slower). Cephes-style range reduction with minimax polynomials; relative error ≲ 2 ulp
/// for exp over the float range that matters for activations.

public typealias Float16x = SIMD16<Float>

// simdExp, simdSigmoid and simdTanh are @_transparent: with @inline(__always) the SIL
// inliner leaves them out of line inside large kernels (erf, GELU), and each call then
// moves the vector as four 128-bit pieces (GELU 3-4x slower with AVX-512).

/// e^x per lane; inputs clamped to [-87.3, 88.7] (results then saturate to 0 or ~Float.max).
@_transparent
public func simdExp(_ x: Float16x) -> Float16x {
    // SIMD `clamped`, `rounded` and Int32(Float) conversion compile to slow generic code
    // (about 30× this whole function): clamp with masks, round with the 1.5·2^23 trick.
    let xc = x.replacing(with: -87.33, where: x .< -87.33).replacing(with: 88.72, where: x .> 88.72)
    // n = round(x / ln 2); r = x - n ln 2 in two parts for accuracy.
    let t = xc * 1.442_695_040_888_963_4 + 12_582_912
    let n = t - 12_582_912
    var r = xc - n * 0.693_359_375
    r = r - n * -2.121_944_40e-4
    // e^r on [-ln2/2, ln2/2]: degree-6 polynomial (Cephes expf).
    var p = Float16x(repeating: 1.987_569_150_0e-4)
    #if LOOM_FMA
    p = Float16x(repeating: 1.398_199_950_7e-3).addingProduct(p, r)
    p = Float16x(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
    p = Float16x(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
    p = Float16x(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
    p = Float16x(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
    p = (r + 1).addingProduct(p, r * r)
    #else
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    p = p * r * r + r + 1
    #endif
    // Scale by 2^n through the exponent bits.
    // t's low mantissa bits hold n (t = 1.5·2^23 + n).
    let bits = (unsafeBitCast(t, to: SIMD16<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: Float16x.self)
}

/// 1 / (1 + e^-x) per lane.
@_transparent
public func simdSigmoid(_ x: Float16x) -> Float16x {
    1 / (1 + simdExp(-x))
}

/// tanh per lane, as 2σ(2x) − 1 (accurate to a few ulp away from 0; exact sign).
@_transparent
public func simdTanh(_ x: Float16x) -> Float16x {
    2 / (1 + simdExp(-2 * x)) - 1
}

/// Applies a lane function to `n` floats: full SIMD16 blocks, then a padded tail.
@inline(__always)
public func simdMap(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
                    _ f: (Float16x) -> Float16x) {
    var i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(src + i).loadUnaligned(as: Float16x.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: f(v), as: Float16x.self)
        i += 16
    }
    if i < n {
        var v = Float16x(repeating: 0)
        for k in 0..<(n - i) { v[k] = src[i + k] }
        let r = f(v)
        for k in 0..<(n - i) { dst[i + k] = r[k] }
    }
}

/// Sum of `n` floats with 16-lane accumulators (vectorised; order fixed by `n` alone).
@inline(__always)
public func simdSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = Float16x(repeating: 0)
    var i = 0
    while i + 16 <= n {
        acc += UnsafeRawPointer(p + i).loadUnaligned(as: Float16x.self)
        i += 16
    }
    var s = acc.sum()
    while i < n { s += p[i]; i += 1 }
    return s
}
