import Foundation

/// Elementwise powers, absolute value, clamping and the error function. Forward passes are
/// SIMD16 lane maps; backward passes run one fused SIMD kernel when the tape is off and
/// differentiable composite formulas when a graph is being built (second order).

/// g · d(x) for a piecewise-constant derivative d (relu, abs, clamp): d itself has zero
/// derivative almost everywhere, so the composite form is g times a tape-free constant and
/// stays differentiable in g.
@inline(__always)
func gradTimesStep(_ g: Tensor, _ x: Tensor, _ d: (Float16x) -> Float16x) -> Tensor {
    if GradMode.isEnabled { return g * mapSIMD(x, d) }
    return mapSIMD(g, x) { g, x in g * d(x) }
}

/// sign(x) per lane (0 at ±0, NaN maps to 0), the derivative of |x|.
@inline(__always)
func simdSign(_ x: Float16x) -> Float16x {
    Float16x(repeating: 0).replacing(with: 1, where: x .> 0).replacing(with: -1, where: x .< 0)
}

/// |x| per lane by clearing the sign bit (so -0 becomes +0, NaN stays NaN).
@inline(__always)
func simdAbs(_ x: Float16x) -> Float16x {
    unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x7fff_ffff, to: Float16x.self)
}

/// erf per lane, absolute error below 3e-7 over the whole line. |x| < 0.5 uses the
/// Maclaurin series x·P(x²) (keeps relative accuracy near 0); beyond, erfc from Numerical
/// Recipes' Chebyshev fit t·exp(-x² + Q(t)), t = 1/(1 + x/2), fractional error < 1.2e-7.
@_transparent
public func simdErf(_ x: Float16x) -> Float16x {
    let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
    let a = unsafeBitCast(bits & 0x7fff_ffff, to: Float16x.self)
    let z = a * a
    var p = Float16x(repeating: 1.0 / 9360)
    p = p * z - 1.0 / 1320
    p = p * z + 1.0 / 216
    p = p * z - 1.0 / 42
    p = p * z + 0.1
    p = p * z - 1.0 / 3
    p = p * z + 1
    let small = a * p * 1.128_379_167_095_512_6  // 2/√π
    let t = 1 / (1 + 0.5 * a)
    var q = Float16x(repeating: 0.170_872_77)
    q = q * t - 0.822_152_23
    q = q * t + 1.488_515_87
    q = q * t - 1.135_203_98
    q = q * t + 0.278_868_07
    q = q * t - 0.186_288_06
    q = q * t + 0.096_784_18
    q = q * t + 0.374_091_96
    q = q * t + 1.000_023_68
    q = q * t - 1.265_512_23
    let large = 1 - t * simdExp(q - z)
    let r = large.replacing(with: small, where: a .< 0.5)
    return unsafeBitCast(unsafeBitCast(r, to: SIMD16<UInt32>.self) | (bits & 0x8000_0000), to: Float16x.self)
}

/// How `pow` evaluates x^p: integer powers by repeated squaring (exact signs for negative
/// x, no libm call), ±1/2 with the square-root instruction, anything else with libm per lane.
enum PowKernel {
    case integer(Int), sqrt, rsqrt, general(Float)

    init(_ p: Float) {
        if p == p.rounded(), Swift.abs(p) <= 64 {
            self = .integer(Int(p))
        } else if p == 0.5 {
            self = .sqrt
        } else if p == -0.5 {
            self = .rsqrt
        } else {
            self = .general(p)
        }
    }

    @inline(__always)
    func apply(_ x: Float16x) -> Float16x {
        switch self {
        case .integer(let n):
            var base = x, result = Float16x(repeating: 1), e = Swift.abs(n)
            while e > 0 {
                if e & 1 == 1 { result *= base }
                e >>= 1
                if e > 0 { base *= base }
            }
            return n < 0 ? 1 / result : result
        case .sqrt:
            return x.squareRoot()
        case .rsqrt:
            return 1 / x.squareRoot()
        case .general(let p):
            var r = x
            for k in 0..<16 { r[k] = Foundation.pow(x[k], p) }
            return r
        }
    }
}

extension Tensor {
    /// x^p elementwise (NaN for negative x and non-integer p, as in libm).
    public func pow(_ p: Float) -> Tensor {
        let kernel = PowKernel(p)
        let out = mapSIMD(self) { kernel.apply($0) }
        return out.recorded("pow", [self]) { g, _ in
            // p = 0 is constant; spelled out so x = 0 gives 0, not 0·∞.
            if p == 0 { return [Tensor.zeros(g.shape)] }
            if GradMode.isEnabled { return [g * (self.pow(p - 1) * p)] }
            let d = PowKernel(p - 1)
            return [mapSIMD(g, self) { g, x in g * p * d.apply(x) }]
        }
    }

    /// x² elementwise.
    public func square() -> Tensor {
        let out = mapSIMD(self) { $0 * $0 }
        return out.recorded("square", [self]) { g, _ in
            if GradMode.isEnabled { return [g * (self * 2)] }
            return [mapSIMD(g, self) { g, x in 2 * g * x }]
        }
    }

    /// 1/√x elementwise (normalisation layers).
    public func rsqrt() -> Tensor {
        let out = mapSIMD(self) { 1 / $0.squareRoot() }
        let y = out.detached()
        return out.recorded("rsqrt", [self]) { g, _ in
            if GradMode.isEnabled { let r = self.rsqrt(); return [g * (r * r * r) * -0.5] }
            return [mapSIMD(g, y) { g, r in -0.5 * g * r * r * r }]
        }
    }

    /// |x| elementwise; the gradient at 0 is 0 (as in PyTorch).
    public func abs() -> Tensor {
        let out = mapSIMD(self, simdAbs)
        return out.recorded("abs", [self]) { g, _ in [gradTimesStep(g, self, simdSign)] }
    }

    /// x limited to [min, max] (nil leaves that side open). The gradient passes where
    /// min ≤ x ≤ max, inclusive at the bounds as in PyTorch.
    public func clamped(min: Float?, max: Float?) -> Tensor {
        let lo = min ?? -.infinity, hi = max ?? .infinity
        precondition(lo <= hi, "clamped: min \(lo) > max \(hi)")
        let vlo = Float16x(repeating: lo), vhi = Float16x(repeating: hi)
        let out = mapLanes(self, ClampLanes(lo: lo, hi: hi))
        return out.recorded("clamp", [self]) { g, _ in
            [gradTimesStep(g, self) { x in Float16x(repeating: 0).replacing(with: 1, where: (x .>= vlo) .& (x .<= vhi)) }]
        }
    }

    /// The error function erf(x) elementwise (exact GELU, normal CDFs).
    public func erf() -> Tensor {
        let out = mapLanes(self, ErfLanes())
        return out.recorded("erf", [self]) { g, _ in
            if GradMode.isEnabled { return [g * ((self * self * -1).exp() * 1.128_379_167_095_512_6)] }  // 2/√π
            return [mapLanes(g, self, ErfGradLanes())]
        }
    }
}
