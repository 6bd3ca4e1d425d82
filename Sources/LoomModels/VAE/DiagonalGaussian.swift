import Foundation
import LoomNN
import LoomTensor

/// A diagonal Gaussian posterior q(z|x) = N(μ, diag σ²), as latent diffusion's
/// `DiagonalGaussianDistribution`: the log-variance is clamped to [-30, 20].
public struct DiagonalGaussian {
    /// μ, `[B, …]`.
    public let mean: Tensor
    /// log σ², clamped to [-30, 20].
    public let logVariance: Tensor

    /// The clamp latent diffusion applies to the log-variance.
    public static let logVarianceRange: ClosedRange<Float> = -30...20

    /// From the encoder's mean and (unclamped) log-variance, both `[B, …]`.
    public init(mean: Tensor, logVariance: Tensor) {
        precondition(mean.shape == logVariance.shape, "DiagonalGaussian: mean \(mean.shape) and log-variance \(logVariance.shape) differ")
        self.mean = mean
        self.logVariance = logVariance.clamped(min: Self.logVarianceRange.lowerBound, max: Self.logVarianceRange.upperBound)
    }

    /// Splits `moments` `[B, …, 2k]` along the last axis into mean (first k) and log-variance.
    public init(moments: Tensor) {
        let parts = moments.chunked(2, axis: moments.rank - 1)
        self.init(mean: parts[0], logVariance: parts[1])
    }

    /// σ = exp(½ log σ²).
    public var std: Tensor { (logVariance * 0.5).exp() }

    /// The reparameterised sample z = μ + σ·ε for standard normal noise `epsilon` (same shape),
    /// differentiable with respect to μ and log σ².
    public func sample(epsilon: Tensor) -> Tensor {
        precondition(epsilon.shape == mean.shape, "DiagonalGaussian.sample: noise \(epsilon.shape) for a mean of \(mean.shape)")
        return mean + std * epsilon
    }

    /// KL(q ‖ N(0, I)) in closed form, summed over every element:
    /// ½ Σ (μ² + σ² − 1 − log σ²) (a scalar; divide by B for the per-sample mean).
    public func klSum() -> Tensor {
        ((mean.square() + logVariance.exp() - logVariance - 1) * 0.5).sum()
    }
}

/// A model with a diagonal-Gaussian encoder and a decoder: every VAE of the family.
public protocol VariationalAutoencoder: Module {
    /// The latent shape of one sample (`[d]` for vector latents, `[h, w, c]` for maps).
    var latentShape: [Int] { get }
    /// q(z|x) for images `[B, H, W, C]` in [-1, 1].
    func encode(_ x: Tensor) -> DiagonalGaussian
    /// The decoder's raw output `[B, H, W, C]` for latents `[B] + latentShape` (logits of the
    /// likelihood VAEs, the image itself for the KL autoencoder).
    func decode(_ z: Tensor) -> Tensor
    /// The decoder's last layer (the adaptive adversarial weight compares gradients there).
    var lastLayerWeight: Tensor { get }
}
