import Foundation
import LoomTensor

/// Learned variances (Nichol & Dhariwal, "Improved DDPM"; guided-diffusion's LEARNED_RANGE):
/// the network outputs 2C channels, its usual prediction then v ∈ [−1, 1] per element, and
/// log σ²_θ = frac·log β_t + (1 − frac)·log β̃_t with frac = (v + 1)/2. Training adds
/// λ·T·L_t (the hybrid objective, L_vlb = Σ_t L_t sampled uniformly), where L_t is the
/// variational bound term in bits per dimension with the mean's gradient stopped.
extension GaussianDiffusion {
    /// The network output split into its prediction (first C channels) and v (last C).
    public func splitLearnedOutput(_ output: Tensor) -> (prediction: Tensor, v: Tensor) {
        let parts = output.chunked(2, axis: -1)
        return (parts[0], parts[1])
    }

    /// `values[n]` broadcast over item n of a tensor shaped like `like`: `[N, 1, …, 1]`.
    func perItem(_ values: [Double], like x: Tensor) -> Tensor {
        Tensor(values.map(Float.init), shape: [values.count] + Array(repeating: 1, count: x.rank - 1))
    }

    /// log σ²_θ for v at timesteps `t` (on the tape, differentiable in v), between
    /// log β_t (v = 1) and the clipped log β̃_t (v = −1).
    public func learnedLogVariance(_ v: Tensor, t: [Int]) -> Tensor {
        let maxLog = t.map { Foundation.log(schedule.betas[$0]) }
        let minLog = t.map { schedule.posteriorLogVarianceClipped[$0] }
        // frac·max + (1 − frac)·min = v·(max − min)/2 + (max + min)/2
        return v * perItem(zip(maxLog, minLog).map { ($0 - $1) / 2 }, like: v)
            + perItem(zip(maxLog, minLog).map { ($0 + $1) / 2 }, like: v)
    }

    /// L_t per item in bits per dimension, `[N]`: KL(q(x_{t−1} | x_t, x0) ‖ p_θ(x_{t−1} | x_t))
    /// for t > 0 and the discretised decoder NLL −log p_θ(x0 | x1) for t = 0. The mean of
    /// p_θ comes from `prediction` (which the caller detaches, as guided-diffusion does); the
    /// gradient flows through `logVariance` only.
    public func variationalBoundTerms(x0: Tensor, xt: Tensor, t: [Int], prediction: Tensor, logVariance: Tensor) -> Tensor {
        let s = schedule
        let posteriorMean = perSampleLinearCombination([(x0, coefficients(s.posteriorMeanCoef1, t)),
                                                        (xt, coefficients(s.posteriorMeanCoef2, t))])
        let x0Hat = predictX0(from: prediction, xt: xt, t: t)
        let modelMean = perSampleLinearCombination([(x0Hat, coefficients(s.posteriorMeanCoef1, t)),
                                                    (xt, coefficients(s.posteriorMeanCoef2, t))])
        let posteriorLogVariance = perItem(t.map { s.posteriorLogVarianceClipped[$0] }, like: x0)
        let kl = normalKL(mean1: posteriorMean, logVariance1: posteriorLogVariance.expanded(to: x0.shape),
                          mean2: modelMean, logVariance2: logVariance)
        let nll = discretizedGaussianLogLikelihood(x0, mean: modelMean, logScale: logVariance * 0.5) * -1
        let atZero = perItem(t.map { $0 == 0 ? 1 : 0 }, like: x0)
        let perElement = kl * (1 - atZero) + nll * atZero
        let dims = Array(1..<x0.rank)
        return perElement.mean(axes: dims) * Float(1 / Foundation.log(2.0))
    }
}

/// KL(N(μ1, e^{lv1}) ‖ N(μ2, e^{lv2})) per element:
/// ½(−1 + lv2 − lv1 + e^{lv1 − lv2} + (μ1 − μ2)² e^{−lv2}).
public func normalKL(mean1: Tensor, logVariance1: Tensor, mean2: Tensor, logVariance2: Tensor) -> Tensor {
    let d = mean1 - mean2
    return ((logVariance2 - logVariance1) + (logVariance1 - logVariance2).exp() + d * d * (logVariance2 * -1).exp() - 1) * 0.5
}

/// Φ(u) ≈ ½(1 + tanh(√(2/π)(u + 0.044715u³))), the approximation guided-diffusion uses.
func approximateStandardNormalCDF(_ u: Tensor) -> Tensor {
    ((u + u * u * u * 0.044715) * Float((2 / Double.pi).squareRoot())).tanh() * 0.5 + 0.5
}

/// log p(x | μ, e^{logScale}) per element for images in [−1, 1] quantised to 256 levels
/// (bins of width 2/255, the outermost bins open to ±∞), as guided-diffusion's
/// `discretized_gaussian_log_likelihood`. x must be a constant (no gradient).
public func discretizedGaussianLogLikelihood(_ x: Tensor, mean: Tensor, logScale: Tensor) -> Tensor {
    let centered = x - mean
    let inverseScale = (logScale * -1).exp()
    let cdfPlus = approximateStandardNormalCDF(inverseScale * (centered + Float(1.0 / 255)))
    let cdfMin = approximateStandardNormalCDF(inverseScale * (centered - Float(1.0 / 255)))
    let logCDFPlus = cdfPlus.clamped(min: 1e-12, max: nil).log()
    let logOneMinusCDFMin = (1 - cdfMin).clamped(min: 1e-12, max: nil).log()
    let logDelta = (cdfPlus - cdfMin).clamped(min: 1e-12, max: nil).log()
    // Which bin formula applies depends on x alone: masks, constant on the tape.
    let low = Tensor(x.array.map { $0 < -0.999 ? 1 : 0 }, shape: x.shape)
    let high = Tensor(x.array.map { $0 > 0.999 ? 1 : 0 }, shape: x.shape)
    return logCDFPlus * low + logOneMinusCDFMin * high + logDelta * (1 - low - high)
}
