import Foundation
import LoomTensor

/// Reverse-process samplers: DDPM ancestral sampling, DDIM (η), and DPM-Solver++(2M).
///
/// Every sampler runs off the tape from a given initial noise x_T and draws any further
/// noise from a `RandomStream`, so a fixed seed reproduces samples bit for bit. Timesteps
/// use the "trailing" spacing of diffusers (Lin et al. 2024, "Common diffusion noise
/// schedules and sample steps are flawed"): the first step is always t = T − 1, where the
/// initial N(0, I) noise belongs, and the last step jumps to clean data (ᾱ = 1, written
/// t = −1), where it returns the final x0 estimate.

/// A sampling algorithm and its step count.
public enum Sampler: Equatable, Sendable {
    /// Ancestral DDPM with the "fixed small" posterior variance; `steps` < T respaces the
    /// chain as guided-diffusion's SpacedDiffusion does (nil = all T steps).
    case ddpm(steps: Int? = nil)
    /// DDIM with stochasticity η (0 = deterministic ODE, 1 ≈ ancestral DDPM).
    case ddim(steps: Int, eta: Double = 0)
    /// DPM-Solver++(2M): multistep, second order, on the data (x0) prediction.
    case dpmSolver2M(steps: Int)
}

/// What DPM-Solver++(2M) carries from one step to the next: the previous x0 estimate and
/// the timestep it was made at.
public struct DPMSolverHistory {
    /// The x0 estimate of the previous step.
    public var x0: Tensor
    /// The timestep of that estimate.
    public var t: Int

    /// A history entry.
    public init(x0: Tensor, t: Int) {
        self.x0 = x0
        self.t = t
    }
}

extension GaussianDiffusion {
    /// `steps` timesteps from T − 1 downwards, trailing spacing:
    /// round(T − i·T/steps) − 1 for i = 0 ..< steps (NumPy's round-half-to-even).
    public func samplingTimesteps(steps: Int) -> [Int] {
        precondition((1...timesteps).contains(steps), "steps must lie in 1...\(timesteps), got \(steps)")
        let T = Double(timesteps), ratio = T / Double(steps)
        return (0..<steps).map { i in Int((T - Double(i) * ratio).rounded(.toNearestOrEven)) - 1 }
    }

    /// The same timestep for every item of x.
    @inline(__always)
    func batchTimesteps(_ t: Int, _ x: Tensor) -> [Int] { [Int](repeating: t, count: x.shape[0]) }

    // MARK: DDPM

    /// One ancestral step x_t → x_tPrev: the mean of q(x_tPrev | x_t, x0̂) plus the posterior
    /// standard deviation times `noise` (needed unless tPrev = −1, the noiseless last step).
    /// With tPrev = t − 1 the coefficients are guided-diffusion's tables; otherwise they are
    /// the respaced ones for β' = 1 − ᾱ_t/ᾱ_tPrev.
    public func ddpmStep(model: Denoiser, x: Tensor, t: Int, tPrev: Int? = nil,
                         options: SamplingOptions = SamplingOptions(), noise: Tensor?) -> Tensor {
        let prev = tPrev ?? t - 1
        precondition(prev < t && prev >= -1, "DDPM step from \(t) to \(prev)")
        let d = denoise(model: model, x: x, t: t, options: options)
        let s = schedule
        let coef1, coef2, variance: Double
        if prev == t - 1 {
            (coef1, coef2, variance) = (s.posteriorMeanCoef1[t], s.posteriorMeanCoef2[t], s.posteriorVariance[t])
        } else {
            let ab = s.alphaBar(t), abPrev = s.alphaBar(prev), beta = 1 - ab / abPrev
            coef1 = beta * abPrev.squareRoot() / (1 - ab)
            coef2 = (1 - abPrev) * (1 - beta).squareRoot() / (1 - ab)
            variance = beta * (1 - abPrev) / (1 - ab)
        }
        return noGrad {
            let n = x.shape[0]
            var terms: [(tensor: Tensor, coefficients: [Float])] = [
                (d.x0, [Float](repeating: Float(coef1), count: n)),
                (x, [Float](repeating: Float(coef2), count: n)),
            ]
            guard prev >= 0 else { return perSampleLinearCombination(terms) }
            guard let noise else { preconditionFailure("DDPM step to t = \(prev) needs noise") }
            guard let v = d.v else {
                terms.append((noise, [Float](repeating: Float(variance.squareRoot()), count: n)))
                return perSampleLinearCombination(terms)
            }
            // Learned: σ = exp(½(frac·log β + (1 − frac)·log β̃)), frac = (v + 1)/2, per element,
            // with β and β̃ of this (possibly respaced) step.
            let maxLog = Foundation.log(prev == t - 1 ? s.betas[t] : 1 - s.alphaBar(t) / s.alphaBar(prev))
            let minLog = prev == t - 1 ? s.posteriorLogVarianceClipped[t] : Foundation.log(variance)
            let halfLogVariance = v * Float((maxLog - minLog) / 4) + Float((maxLog + minLog) / 4)
            return perSampleLinearCombination(terms) + halfLogVariance.exp() * noise
        }
    }

    // MARK: DDIM

    /// One DDIM step x_t → x_tPrev (Song et al. eq. 12): √ᾱ' x0̂ + √(1 − ᾱ' − σ²) ε̂ + σ·noise,
    /// σ = η √((1 − ᾱ')/(1 − ᾱ)) √(1 − ᾱ/ᾱ'). `noise` is needed when σ > 0.
    public func ddimStep(model: Denoiser, x: Tensor, t: Int, tPrev: Int, eta: Double,
                         options: SamplingOptions = SamplingOptions(), noise: Tensor?) -> Tensor {
        precondition(tPrev < t && tPrev >= -1, "DDIM step from \(t) to \(tPrev)")
        let d = denoise(model: model, x: x, t: t, options: options)
        let ab = schedule.alphaBar(t), abPrev = schedule.alphaBar(tPrev)
        let sigma = eta * ((1 - abPrev) / (1 - ab)).squareRoot() * (1 - ab / abPrev).squareRoot()
        let direction = Swift.max(0, 1 - abPrev - sigma * sigma).squareRoot()
        return noGrad {
            let n = x.shape[0]
            var terms: [(tensor: Tensor, coefficients: [Float])] = [
                (d.x0, [Float](repeating: Float(abPrev.squareRoot()), count: n)),
                (d.epsilon, [Float](repeating: Float(direction), count: n)),
            ]
            if sigma > 0 {
                guard let noise else { preconditionFailure("DDIM step with η = \(eta) needs noise") }
                terms.append((noise, [Float](repeating: Float(sigma), count: n)))
            }
            return perSampleLinearCombination(terms)
        }
    }

    // MARK: DPM-Solver++(2M)

    /// λ_t = log(α_t/σ_t) = ½ log(ᾱ/(1 − ᾱ)), the half log-SNR DPM-Solver integrates over.
    public func halfLogSNR(_ t: Int) -> Double { 0.5 * Foundation.log(schedule.snr[t]) }

    /// One DPM-Solver++ step x_t → x_tNext (Lu et al. 2022, data prediction, diffusers'
    /// "midpoint" form). With h = λ_next − λ_t: first order (no history, i.e. the first
    /// step) x' = (σ'/σ) x + α'(1 − e^{−h}) D0; second order x' = (σ'/σ) x +
    /// α'(1 − e^{−h})(D0 + ½ D1), D0 = x0̂_t, D1 = (x0̂_t − x0̂_prev)·h/h_prev. The step to
    /// tNext = −1 (σ' = 0) is first order and returns x0̂_t, as diffusers' zero final sigma.
    /// Updates `history` to this step's x0 estimate.
    public func dpmSolverStep(model: Denoiser, x: Tensor, t: Int, tNext: Int,
                              options: SamplingOptions = SamplingOptions(),
                              history: inout DPMSolverHistory?) -> Tensor {
        precondition(tNext < t && tNext >= -1, "DPM-Solver step from \(t) to \(tNext)")
        let d = denoise(model: model, x: x, t: t, options: options)
        let previous = history
        history = DPMSolverHistory(x0: d.x0, t: t)
        if tNext < 0 { return d.x0 }
        let ab = schedule.alphaBar(t), abNext = schedule.alphaBar(tNext)
        let sigmaRatio = ((1 - abNext) / (1 - ab)).squareRoot()
        let h = halfLogSNR(tNext) - halfLogSNR(t)
        let phi = abNext.squareRoot() * -expm1(-h)   // α'(1 − e^{−h})
        let n = x.shape[0]
        return noGrad {
            guard let previous else {
                return perSampleLinearCombination([
                    (x, [Float](repeating: Float(sigmaRatio), count: n)),
                    (d.x0, [Float](repeating: Float(phi), count: n)),
                ])
            }
            let r = (halfLogSNR(t) - halfLogSNR(previous.t)) / h
            return perSampleLinearCombination([
                (x, [Float](repeating: Float(sigmaRatio), count: n)),
                (d.x0, [Float](repeating: Float(phi * (1 + 0.5 / r)), count: n)),
                (previous.x0, [Float](repeating: Float(-phi * 0.5 / r), count: n)),
            ])
        }
    }

    // MARK: Loops

    /// Runs `sampler` from the initial noise x_T (NHWC) to a sample, off the tape. Extra
    /// noise (DDPM, DDIM with η > 0) comes from `stream`, one N(0, I) tensor per noisy step.
    public func sample(_ sampler: Sampler, model: Denoiser, noise: Tensor,
                       options: SamplingOptions = SamplingOptions(), stream: inout RandomStream) -> Tensor {
        var s = stream
        let out = sample(sampler, model: model, noise: noise, options: options) { Tensor.normal($0, stream: &s) }
        stream = s
        return out
    }

    /// Runs `sampler` from x_T, taking each noisy step's N(0, I) tensor of the given shape from
    /// `draw` (e.g. one stream per image, so an image's samples do not depend on its batch).
    public func sample(_ sampler: Sampler, model: Denoiser, noise: Tensor,
                       options: SamplingOptions = SamplingOptions(), draw: ([Int]) -> Tensor) -> Tensor {
        noGrad {
            var x = noise
            switch sampler {
            case .ddpm(let steps):
                let ts = samplingTimesteps(steps: steps ?? timesteps)
                for (i, t) in ts.enumerated() {
                    let tPrev = i + 1 < ts.count ? ts[i + 1] : -1
                    let z = tPrev >= 0 ? draw(x.shape) : nil
                    x = ddpmStep(model: model, x: x, t: t, tPrev: tPrev, options: options, noise: z)
                }
            case .ddim(let steps, let eta):
                let ts = samplingTimesteps(steps: steps)
                for (i, t) in ts.enumerated() {
                    let tPrev = i + 1 < ts.count ? ts[i + 1] : -1
                    let z = eta > 0 && tPrev >= 0 ? draw(x.shape) : nil
                    x = ddimStep(model: model, x: x, t: t, tPrev: tPrev, eta: eta, options: options, noise: z)
                }
            case .dpmSolver2M(let steps):
                let ts = samplingTimesteps(steps: steps)
                var history: DPMSolverHistory?
                for (i, t) in ts.enumerated() {
                    let tNext = i + 1 < ts.count ? ts[i + 1] : -1
                    x = dpmSolverStep(model: model, x: x, t: t, tNext: tNext, options: options, history: &history)
                }
            }
            return x
        }
    }
}
