import Foundation
import LoomTensor

/// A denoising network as the diffusion math sees it: noisy images x_t (NHWC), one integer
/// timestep per item, optional class labels; returns the prediction (same shape as x).
public typealias Denoiser = (_ x: Tensor, _ t: [Int], _ labels: [Int]?) -> Tensor

/// What the network is trained to output.
public enum PredictionTarget: String, Sendable, CaseIterable {
    /// The added noise ε (Ho et al.).
    case epsilon
    /// The velocity v = √ᾱ ε − √(1−ᾱ) x0 (Salimans & Ho, progressive distillation).
    case v
    /// The clean image x0.
    case x0
}

/// How the per-item losses are weighted.
public enum LossWeighting: Equatable, Sendable {
    /// Every timestep counts the same (Ho et al.'s "simple" loss).
    case uniform
    /// Min-SNR-γ (Hang et al. 2023): caps the weight of low-noise timesteps, whose easy
    /// gradients otherwise dominate; expressed for the network's own target.
    case minSNR(gamma: Double)
}

/// Gaussian diffusion (DDPM) training math, kept apart from any network: the forward
/// process q(x_t | x_0), conversions between prediction targets, and the training loss.
/// Samplers live in `Samplers.swift`, guidance in `Guidance.swift`.
public struct GaussianDiffusion: Sendable {
    /// The β schedule and derived tables.
    public let schedule: NoiseSchedule
    /// What the network predicts.
    public var target: PredictionTarget
    /// Loss weighting across timesteps.
    public var weighting: LossWeighting
    /// Offset-noise strength: adds strength · N(0, 1) per item and channel to the training
    /// noise, so the model learns to change an image's mean brightness (0 turns it off).
    public var offsetNoise: Float
    /// Whether the network also outputs v for a learned variance (`LearnedVariance.swift`);
    /// its output then has twice the image's channels.
    public var learnSigma = false
    /// λ of the hybrid objective L_simple + λ·L_vlb (Improved DDPM: 0.001).
    public var vlbWeight = 0.001

    /// A diffusion process; the defaults are W1/W2's ε-prediction with the plain MSE.
    public init(schedule: NoiseSchedule = .linear(), target: PredictionTarget = .epsilon,
                weighting: LossWeighting = .uniform, offsetNoise: Float = 0) {
        self.schedule = schedule
        self.target = target
        self.weighting = weighting
        self.offsetNoise = offsetNoise
    }

    /// Number of diffusion steps T.
    public var timesteps: Int { schedule.timesteps }

    /// `table[t[n]]` for each item, as the float coefficients of a per-sample combination.
    @inline(__always)
    func coefficients(_ table: [Double], _ t: [Int]) -> [Float] {
        t.map { Float(table[$0]) }
    }

    // MARK: Forward process

    /// x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε, in closed form, one t per item (on the tape).
    public func qSample(x0: Tensor, t: [Int], noise: Tensor) -> Tensor {
        precondition(x0.shape.first == t.count, "qSample: \(t.count) timesteps for batch \(x0.shape)")
        return perSampleLinearCombination([
            (x0, coefficients(schedule.sqrtAlphasCumprod, t)),
            (noise, coefficients(schedule.sqrtOneMinusAlphasCumprod, t)),
        ])
    }

    /// What the network should output for (x0, ε, t) under `target`.
    public func trainingTarget(x0: Tensor, noise: Tensor, t: [Int]) -> Tensor {
        switch target {
        case .epsilon: return noise
        case .x0: return x0
        case .v:
            return perSampleLinearCombination([
                (noise, coefficients(schedule.sqrtAlphasCumprod, t)),
                (x0, coefficients(schedule.sqrtOneMinusAlphasCumprod, t).map { -$0 }),
            ])
        }
    }

    // MARK: Conversions between targets

    /// The x0 implied by a network output at x_t (ε: (x_t − √(1−ᾱ)ε)/√ᾱ; v: √ᾱ x_t − √(1−ᾱ) v).
    public func predictX0(from output: Tensor, xt: Tensor, t: [Int]) -> Tensor {
        switch target {
        case .x0: return output
        case .epsilon:
            return perSampleLinearCombination([
                (xt, coefficients(schedule.sqrtRecipAlphasCumprod, t)),
                (output, coefficients(schedule.sqrtRecipm1AlphasCumprod, t).map { -$0 }),
            ])
        case .v:
            return perSampleLinearCombination([
                (xt, coefficients(schedule.sqrtAlphasCumprod, t)),
                (output, coefficients(schedule.sqrtOneMinusAlphasCumprod, t).map { -$0 }),
            ])
        }
    }

    /// The ε implied by a network output at x_t (v: √(1−ᾱ) x_t + √ᾱ v).
    public func predictEpsilon(from output: Tensor, xt: Tensor, t: [Int]) -> Tensor {
        switch target {
        case .epsilon: return output
        case .x0: return epsilon(fromX0: output, xt: xt, t: t)
        case .v:
            return perSampleLinearCombination([
                (xt, coefficients(schedule.sqrtOneMinusAlphasCumprod, t)),
                (output, coefficients(schedule.sqrtAlphasCumprod, t)),
            ])
        }
    }

    /// ε = (√(1/ᾱ) x_t − x0) / √(1/ᾱ − 1): the noise consistent with an x0 estimate
    /// (used after clipping x0, as guided-diffusion does).
    public func epsilon(fromX0 x0: Tensor, xt: Tensor, t: [Int]) -> Tensor {
        perSampleLinearCombination([
            (xt, t.map { Float(schedule.sqrtRecipAlphasCumprod[$0] / schedule.sqrtRecipm1AlphasCumprod[$0]) }),
            (x0, t.map { Float(-1 / schedule.sqrtRecipm1AlphasCumprod[$0]) }),
        ])
    }

    // MARK: Loss

    /// Per-item loss weights for timesteps `t`. Min-SNR-γ for each target, with
    /// SNR = ᾱ/(1−ᾱ): ε → min(SNR, γ)/SNR, v → min(SNR, γ)/(SNR + 1), x0 → min(SNR, γ).
    public func lossWeights(t: [Int]) -> [Float] {
        switch weighting {
        case .uniform:
            return [Float](repeating: 1, count: t.count)
        case .minSNR(let gamma):
            return t.map { step in
                let snr = schedule.snr[step], clipped = Swift.min(snr, gamma)
                switch target {
                case .epsilon: return Float(clipped / snr)
                case .v: return Float(clipped / (snr + 1))
                case .x0: return Float(clipped)
                }
            }
        }
    }

    /// Training noise for a batch of `shape` (NHWC): N(0, 1) per element, plus
    /// `offsetNoise` · N(0, 1) per (item, channel) when offset noise is on. Draws the
    /// per-element normals first, then the N·C offsets.
    public func trainingNoise(shape: [Int], stream: inout RandomStream) -> Tensor {
        let noise = Tensor.normal(shape, stream: &stream)
        guard offsetNoise != 0, let n = shape.first, let c = shape.last, n > 0, c > 0 else { return noise }
        let offsets = Tensor.normal([n, c], stream: &stream)
        let spatial = noise.count / (n * c)
        let pn = noise.data, po = offsets.data, strength = offsetNoise
        Parallel.forRange(n * spatial, grain: Swift.max(1, (1 << 14) / c)) { range in
            for pixel in range {
                let o = po + (pixel / spatial) * c, x = pn + pixel * c
                for k in 0..<c { x[k] += strength * o[k] }
            }
        }
        return noise
    }

    /// The training loss for a batch x0 (NHWC): t ~ U{0, …, T−1} per item (N draws of
    /// `stream.nextInt` first), then the noise (`trainingNoise`), then
    /// `trainingLoss(model:x0:labels:t:noise:)`. A scalar on the tape.
    public func trainingLoss(model: Denoiser, x0: Tensor, labels: [Int]?, stream: inout RandomStream) -> Tensor {
        let (t, noise) = trainingDraws(shape: x0.shape, stream: &stream)
        return trainingLoss(model: model, x0: x0, labels: labels, t: t, noise: noise)
    }

    /// The random inputs of the training loss for a batch of `shape`: N timesteps
    /// (`stream.nextInt`), then the noise (`trainingNoise`).
    public func trainingDraws(shape: [Int], stream: inout RandomStream) -> (t: [Int], noise: Tensor) {
        precondition(!shape.isEmpty, "trainingLoss needs a batch axis")
        let t = (0..<shape[0]).map { _ in stream.nextInt(below: timesteps) }
        return (t, trainingNoise(shape: shape, stream: &stream))
    }

    /// The loss for given timesteps and noise: the weighted mean over items of the MSE
    /// between the network output at q_sample(x0, t, noise) and its target.
    public func trainingLoss(model: Denoiser, x0: Tensor, labels: [Int]?, t: [Int], noise: Tensor) -> Tensor {
        precondition(noise.shape == x0.shape, "noise \(noise.shape) does not match x0 \(x0.shape)")
        precondition(t.allSatisfy { (0..<timesteps).contains($0) }, "timestep outside 0..<\(timesteps)")
        let xt = qSample(x0: x0, t: t, noise: noise)
        let output = model(xt, t, labels)
        guard learnSigma else {
            precondition(output.shape == x0.shape, "model output \(output.shape) does not match x0 \(x0.shape)")
            return perSampleWeightedMSE(output, trainingTarget(x0: x0, noise: noise, t: t), weights: lossWeights(t: t))
        }
        precondition(output.shape == Array(x0.shape.dropLast()) + [2 * x0.shape.last!],
                     "model output \(output.shape) is not x0 \(x0.shape) with twice the channels (learned variance)")
        let (prediction, v) = splitLearnedOutput(output)
        let mse = perSampleWeightedMSE(prediction, trainingTarget(x0: x0, noise: noise, t: t), weights: lossWeights(t: t))
        // L_vlb = T·E_t[L_t] for uniform t, so λ·L_vlb is λ·T times the mean of the sampled terms.
        let vb = variationalBoundTerms(x0: x0, xt: xt, t: t, prediction: prediction.detached(),
                                       logVariance: learnedLogVariance(v, t: t))
        return mse + vb.mean() * Float(vlbWeight * Double(timesteps))
    }
}

/// Label dropout for classifier-free guidance: each label becomes `nullClass` with
/// probability `p` (one uniform draw per label, in order), so one network also learns the
/// unconditional model.
public func labelDropout(labels: [Int], p: Double, nullClass: Int, stream: inout RandomStream) -> [Int] {
    labels.map { stream.nextUniform() < Float(p) ? nullClass : $0 }
}
