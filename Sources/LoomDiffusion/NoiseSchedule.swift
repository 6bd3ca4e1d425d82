import Foundation

/// The forward-process variances β₁…β_T and every table derived from them.
///
/// Everything is kept in Double (as guided-diffusion does with float64): ᾱ_t near t = T is
/// ~4e-5 for the linear schedule and quantities like √(1/ᾱ − 1) lose digits in float32.
/// Index t runs 0..<T and means "t + 1 noising steps" (guided-diffusion's convention), so
/// `alphasCumprod[0] = 1 − β₁`. Samplers use t = −1 for clean data (ᾱ = 1).
public struct NoiseSchedule: Equatable, Sendable {
    /// How the betas were made.
    public enum Kind: Equatable, Sendable {
        /// Ho et al.'s linear betas (start/end are the values for T = 1000).
        case linear(start: Double, end: Double)
        /// Nichol & Dhariwal's cosine ᾱ(t) with offset s.
        case cosine(s: Double)
        /// Betas given explicitly.
        case custom
    }

    /// The schedule family.
    public let kind: Kind
    /// Number of diffusion steps T.
    public let timesteps: Int
    /// β_t.
    public let betas: [Double]
    /// α_t = 1 − β_t.
    public let alphas: [Double]
    /// ᾱ_t = Π_{s ≤ t} α_s.
    public let alphasCumprod: [Double]
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1.
    public let alphasCumprodPrev: [Double]
    /// √ᾱ_t: the signal scale of x_t.
    public let sqrtAlphasCumprod: [Double]
    /// √(1 − ᾱ_t): the noise scale of x_t.
    public let sqrtOneMinusAlphasCumprod: [Double]
    /// √(1/ᾱ_t), for x0 = √(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε.
    public let sqrtRecipAlphasCumprod: [Double]
    /// √(1/ᾱ_t − 1).
    public let sqrtRecipm1AlphasCumprod: [Double]
    /// Variance of q(x_{t−1} | x_t, x_0): β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) ("fixed small").
    public let posteriorVariance: [Double]
    /// log of the posterior variance with entry 0 replaced by entry 1 (it is 0 at t = 0).
    public let posteriorLogVarianceClipped: [Double]
    /// Weight of x0 in the posterior mean: β_t √ᾱ_{t−1} / (1 − ᾱ_t).
    public let posteriorMeanCoef1: [Double]
    /// Weight of x_t in the posterior mean: (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t).
    public let posteriorMeanCoef2: [Double]
    /// Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) (min-SNR weighting, DPM-Solver's λ).
    public let snr: [Double]

    /// Linear betas from `start` to `end`. With `scaleToTimesteps` (the default, as in
    /// guided-diffusion) both ends are multiplied by 1000/T so that any T traces the same
    /// continuous-time process as the T = 1000 of Ho et al.; diffusers does not scale.
    public static func linear(timesteps: Int = 1000, start: Double = 1e-4, end: Double = 0.02,
                              scaleToTimesteps: Bool = true) -> NoiseSchedule {
        precondition(timesteps >= 1, "a schedule needs at least one step")
        let scale = scaleToTimesteps ? 1000 / Double(timesteps) : 1
        let b0 = start * scale, b1 = end * scale
        // np.linspace: start + i·step, with the last value exactly `end`.
        let step = timesteps > 1 ? (b1 - b0) / Double(timesteps - 1) : 0
        var betas = (0..<timesteps).map { b0 + Double($0) * step }
        if timesteps > 1 { betas[timesteps - 1] = b1 }
        return NoiseSchedule(betas: betas, kind: .linear(start: start, end: end))
    }

    /// Cosine schedule: ᾱ(τ) = cos²((τ + s)/(1 + s) · π/2) on τ ∈ [0, 1], discretised as
    /// β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T) and clipped at `maxBeta` so the last steps stay finite.
    public static func cosine(timesteps: Int = 1000, s: Double = 0.008, maxBeta: Double = 0.999) -> NoiseSchedule {
        precondition(timesteps >= 1, "a schedule needs at least one step")
        func alphaBar(_ tau: Double) -> Double {
            let c = cos((tau + s) / (1 + s) * Double.pi / 2)
            return c * c
        }
        let T = Double(timesteps)
        let betas = (0..<timesteps).map { i in
            min(1 - alphaBar(Double(i + 1) / T) / alphaBar(Double(i) / T), maxBeta)
        }
        return NoiseSchedule(betas: betas, kind: .cosine(s: s))
    }

    /// A schedule from explicit betas, each in (0, 1].
    public init(betas: [Double], kind: Kind = .custom) {
        precondition(!betas.isEmpty && betas.allSatisfy { $0 > 0 && $0 <= 1 }, "betas must lie in (0, 1]")
        self.kind = kind
        timesteps = betas.count
        self.betas = betas
        alphas = betas.map { 1 - $0 }
        var cumprod = [Double](repeating: 0, count: betas.count)
        var acc = 1.0
        for i in 0..<betas.count { acc *= alphas[i]; cumprod[i] = acc }
        alphasCumprod = cumprod
        alphasCumprodPrev = [1] + cumprod.dropLast()
        sqrtAlphasCumprod = cumprod.map { $0.squareRoot() }
        sqrtOneMinusAlphasCumprod = cumprod.map { (1 - $0).squareRoot() }
        sqrtRecipAlphasCumprod = cumprod.map { (1 / $0).squareRoot() }
        sqrtRecipm1AlphasCumprod = cumprod.map { (1 / $0 - 1).squareRoot() }
        let prev = alphasCumprodPrev
        let count = betas.count
        var variance = [Double](repeating: 0, count: count)
        var coef1 = variance, coef2 = variance
        for i in 0..<count {
            let beta: Double = betas[i], oneMinusBar: Double = 1 - cumprod[i]
            variance[i] = beta * (1 - prev[i]) / oneMinusBar
            coef1[i] = beta * prev[i].squareRoot() / oneMinusBar
            coef2[i] = (1 - prev[i]) * (1 - beta).squareRoot() / oneMinusBar
        }
        posteriorVariance = variance
        // Entry 0 is log(0); guided-diffusion substitutes entry 1 (only logged, never sampled).
        var logVariance = variance.map { Foundation.log($0) }
        logVariance[0] = count > 1 ? logVariance[1] : Foundation.log(betas[0])
        posteriorLogVarianceClipped = logVariance
        posteriorMeanCoef1 = coef1
        posteriorMeanCoef2 = coef2
        snr = cumprod.map { $0 / (1 - $0) }
    }

    /// ᾱ at `t`, extended with ᾱ = 1 at t < 0 (clean data, the end point of every sampler).
    @inlinable
    public func alphaBar(_ t: Int) -> Double { t < 0 ? 1 : alphasCumprod[t] }
}
