/// Activation functions (ReLU, leaky ReLU, GELU) and inverted dropout. Forward passes are
/// SIMD16 lane maps; backward passes are fused SIMD kernels when the tape is off and
/// differentiable composites when a graph is being built (second order).

/// Which GELU formula to use: exact x·Φ(x), or the tanh approximation of GPT-2 / PyTorch's
/// `approximate="tanh"`.
public enum GELUApproximation: Sendable {
    /// x·Φ(x) with Φ from a vectorised erf.
    case none
    /// 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), cheaper and what some checkpoints expect.
    case tanh
}

/// 1/√2, √(2/π), 1/√(2π) and the cubic coefficient of the tanh GELU.
let geluSqrtHalf: Float = 0.707_106_781_186_547_5
let geluSqrtTwoOverPi: Float = 0.797_884_560_802_865_4
let geluInvSqrtTwoPi: Float = 0.398_942_280_401_432_7
let geluCubic: Float = 0.044_715

/// d/dx x·Φ(x) = Φ(x) + x·φ(x) per lane.
@inline(__always)
func geluExactDerivative(_ x: Float16x) -> Float16x {
    let cdf = 0.5 * (1 + simdErf(x * geluSqrtHalf))
    let pdf = simdExp(-0.5 * x * x) * geluInvSqrtTwoPi
    return cdf + x * pdf
}

/// d/dx of 0.5·x·(1 + tanh(k(x + c·x³))) per lane.
@inline(__always)
func geluTanhDerivative(_ x: Float16x) -> Float16x {
    let x2 = x * x
    let t = simdTanh(geluSqrtTwoOverPi * x * (1 + geluCubic * x2))
    let du = geluSqrtTwoOverPi * (1 + (3 * geluCubic) * x2)
    let half = 0.5 * x * (1 - t * t)
    return 0.5 * (1 + t) + half * du
}

/// max(x, 0) per lane, and its derivative (0 at 0, as in PyTorch); batch norm's fused ReLU
/// uses the same two.
@inline(__always) func reluLanes(_ x: Float16x) -> Float16x { x.replacing(with: 0, where: x .< 0) }
@inline(__always) func reluStep(_ x: Float16x) -> Float16x { Float16x(repeating: 0).replacing(with: 1, where: x .> 0) }

/// x for x > 0, slope·x otherwise, per lane, and its derivative (as batch norm's fused one).
@inline(__always) func leakyReLULanes(_ x: Float16x, slope: Float) -> Float16x {
    x.replacing(with: x * Float16x(repeating: slope), where: x .< 0)
}
@inline(__always) func leakyReLUStep(_ x: Float16x, slope: Float) -> Float16x {
    Float16x(repeating: slope).replacing(with: 1, where: x .> 0)
}

extension Tensor {
    /// max(x, 0); the gradient at 0 is 0 (as in PyTorch).
    public func relu() -> Tensor {
        let out = mapSIMD(self, reluLanes)
        return out.recorded("relu", [self]) { g, _ in [gradTimesStep(g, self, reluStep)] }
    }

    /// x for x > 0, slope·x otherwise (GAN discriminators use slope 0.2).
    public func leakyRelu(_ slope: Float = 0.01) -> Tensor {
        let out = mapSIMD(self) { leakyReLULanes($0, slope: slope) }
        return out.recorded("leaky_relu", [self]) { g, _ in
            [gradTimesStep(g, self) { leakyReLUStep($0, slope: slope) }]
        }
    }

    /// GELU: x·Φ(x) with Φ the standard normal CDF, or its tanh approximation.
    public func gelu(approximate: GELUApproximation = .none) -> Tensor {
        switch approximate {
        case .none:
            let out = mapLanes(self, GELULanes())
            return out.recorded("gelu", [self]) { g, _ in
                if GradMode.isEnabled {
                    let cdf = ((self * geluSqrtHalf).erf() + 1) * 0.5
                    let pdf = (self * self * -0.5).exp() * geluInvSqrtTwoPi
                    return [g * (cdf + self * pdf)]
                }
                return [mapLanes(g, self, GELUGradLanes())]
            }
        case .tanh:
            let out = mapLanes(self, GELUTanhLanes())
            return out.recorded("gelu_tanh", [self]) { g, _ in
                if GradMode.isEnabled {
                    let x2 = self * self
                    let t = ((x2 * geluCubic + 1) * self * geluSqrtTwoOverPi).tanh()
                    let d = (t + 1) * 0.5 + self * (1 - t * t) * (x2 * (3 * geluCubic) + 1) * (0.5 * geluSqrtTwoOverPi)
                    return [g * d]
                }
                return [mapLanes(g, self, GELUTanhGradLanes())]
            }
        }
    }

    /// Inverted dropout: zeroes each element with probability p and scales the kept ones by
    /// 1/(1-p), so the expectation is unchanged and inference needs no rescaling. The mask
    /// comes from `stream` (which advances), so a saved stream state replays the same mask.
    /// p = 0 returns `self` and leaves the stream untouched; p = 1 gives zeros.
    public func dropout(p: Float, stream: inout RandomStream) -> Tensor {
        precondition(p >= 0 && p <= 1, "dropout: p = \(p) is outside [0, 1]")
        if p == 0 { return self }
        let mask = Tensor(uninitialized: shape)
        stream.fillUniform(mask.data, count: count)
        let scale: Float = p < 1 ? 1 / (1 - p) : 0
        let pm = mask.data
        let zero = Float16x(repeating: 0)
        Parallel.forRange(count, grain: 1 << 14) { r in
            // Uniforms lie in (0, 1]: u > p keeps with probability 1 - p.
            simdMap(pm + r.lowerBound, pm + r.lowerBound, r.count) { u in zero.replacing(with: scale, where: u .> p) }
        }
        let out = mapSIMD(self, mask) { $0 * $1 }
        return out.recorded("dropout", [self]) { g, _ in [g * mask] }
    }
}
