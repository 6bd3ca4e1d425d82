import LoomNN
import LoomTensor

/// The adversarial objectives, on the discriminator's logits (kept apart from the networks
/// and the training loop). Every loss is a mean over the batch; `real` and `fake` are logits
/// `[B]` on real and generated images and may have different batch sizes.
public enum GANLoss: String, Equatable, Sendable, CaseIterable {
    /// Binary cross-entropy on logits (Goodfellow et al. 2014) with the non-saturating
    /// generator loss: D = softplus(−real) + softplus(fake), G = softplus(−fake) (W3).
    case bce
    /// Wasserstein critic (Arjovsky et al. 2017): D = fake − real, G = −fake (the caller
    /// clips the critic's weights or adds a penalty).
    case wgan
    /// WGAN with gradient penalty (Gulrajani et al. 2017): the WGAN losses; the caller adds
    /// λ·`gradientPenalty(…)` to the critic's loss.
    case wganGP = "wgan_gp"
    /// Hinge loss (Lim & Ye 2017; SNGAN, SAGAN): D = relu(1 − real) + relu(1 + fake), G = −fake.
    case hinge

    /// Whether the critic's loss needs a gradient penalty added by the caller.
    public var usesGradientPenalty: Bool { self == .wganGP }

    /// The discriminator's loss (a scalar) from its logits on real and on fake images.
    public func discriminatorLoss(real: Tensor, fake: Tensor) -> Tensor {
        switch self {
        case .bce:
            return bceWithLogitsLoss(real, Tensor.ones(real.shape)) + bceWithLogitsLoss(fake, Tensor.zeros(fake.shape))
        case .wgan, .wganGP:
            return fake.mean() - real.mean()
        case .hinge:
            return (1 - real).relu().mean() + (1 + fake).relu().mean()
        }
    }

    /// The generator's loss (a scalar) from the discriminator's logits on its images.
    public func generatorLoss(fake: Tensor) -> Tensor {
        switch self {
        case .bce: return bceWithLogitsLoss(fake, Tensor.ones(fake.shape))
        case .wgan, .wganGP, .hinge: return -fake.mean()
        }
    }
}

/// WGAN-GP's penalty: the mean over samples of (‖∇ₓ̂ D(x̂)‖₂ − 1)² at x̂ = ε·real + (1 − ε)·fake,
/// with `epsilon` one weight in [0, 1] per sample (`[B]`, drawn by the caller). x̂ is a new
/// leaf (no gradient reaches `real` or `fake`, i.e. not the generator); the input gradient is
/// built with `createGraph`, so the penalty's backward reaches the critic's weights. The norm
/// is √(Σ g² + 1e-12), finite in gradient even where g = 0. Samples must not interact inside
/// the critic (no batch norm in training mode), as WGAN-GP requires.
public func gradientPenalty(critic: (Tensor) -> Tensor, real: Tensor, fake: Tensor, epsilon: Tensor) -> Tensor {
    precondition(real.shape == fake.shape, "gradientPenalty: real \(real.shape) and fake \(fake.shape) differ")
    let b = real.shape[0]
    precondition(epsilon.count == b, "gradientPenalty: epsilon needs one weight per sample (\(b)), got \(epsilon.shape)")
    let x = noGrad {
        let e = epsilon.reshaped([b] + [Int](repeating: 1, count: real.rank - 1))
        return e * real + (1 - e) * fake
    }
    x.requiresGrad = true
    let g = inputGradient(critic(x), x)
    let norms = (g.square().sum(axes: Array(1..<g.rank)) + 1e-12).sqrt()
    return (norms - 1).square().mean()
}

/// R1 (Mescheder et al. 2018): the mean over samples of ‖∇ₓ D(x)‖² at the real images, built
/// with `createGraph` so its backward reaches the critic's weights. The caller multiplies by
/// γ/2. The images are used as a new leaf (no gradient reaches `real` itself).
public func r1Penalty(critic: (Tensor) -> Tensor, real: Tensor) -> Tensor {
    let x = real.detached()
    x.requiresGrad = true
    return r1Penalty(logits: critic(x), inputs: x)
}

/// R1 from a forward the caller already ran: `logits` `[B]` of the critic on `inputs`, a leaf
/// with `requiresGrad` set before that forward (so the real logits of the loss serve too).
public func r1Penalty(logits: Tensor, inputs: Tensor) -> Tensor {
    precondition(inputs.requiresGrad && inputs.gradFn == nil, "r1Penalty: the inputs must be a leaf requiring gradients")
    let g = inputGradient(logits, inputs)
    return g.square().sum(axes: Array(1..<g.rank)).mean()
}

/// ∂(Σ logits)/∂x on the tape: per-sample input gradients when samples do not interact.
private func inputGradient(_ logits: Tensor, _ x: Tensor) -> Tensor {
    precondition(logits.count == x.shape[0], "GAN penalty: the critic gave \(logits.shape) for a batch of \(x.shape[0])")
    return GradMode.with(enabled: true) { grad(of: logits.sum(), wrt: [x], createGraph: true)[0] }
}
