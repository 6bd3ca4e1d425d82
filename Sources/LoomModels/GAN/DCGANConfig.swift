import LoomNN
import LoomTensor

/// Shape of a DCGAN pair (Radford et al. 2016); the defaults are workload W3, `dcgan-32`
/// (3×32×32, G 1,068,931 and D 663,361 parameters).
///
/// Both networks have one resolution level per doubling from 4×4 (7×7 for 28-pixel images)
/// to the image size: G widens the top level to gChannels·2^(levels−1) and halves the width at
/// every level; D mirrors it with dChannels at its first level.
public struct DCGANConfig: Equatable, Sendable {
    /// Normalisation between D's hidden convolutions.
    public enum DiscriminatorNorm: String, Equatable, Sendable, CaseIterable {
        /// BatchNorm2d (DCGAN, W3).
        case batch
        /// Nothing; the convolutions get a bias instead.
        case none
        /// Layer normalisation over (H, W, C) per sample with a per-channel affine
        /// (PyTorch `GroupNorm(1, C)`; WGAN-GP's critic, which batch norm would break).
        case layer
    }

    /// How a class-conditional discriminator sees the label.
    public enum Conditioning: String, Equatable, Sendable, CaseIterable {
        /// Miyato & Koyama's projection: logit = ψ(φ(x)) + ⟨embed(y), Σ_hw φ(x)⟩, φ(x) the
        /// features before D's last convolution, ψ that convolution.
        case projection
        /// One-hot label planes concatenated to D's input channels.
        case channels
    }

    /// Image side in pixels: 28, 32 or 64.
    public var imageSize = 32
    /// Image channels: 1 or 3.
    public var channels = 3
    /// Width of the latent z.
    public var zDim = 100
    /// Width of G's last hidden level (it doubles towards the top).
    public var gChannels = 64
    /// Width of D's first level (it doubles towards the bottom).
    public var dChannels = 64
    /// Number of classes; 0 = unconditional.
    public var classes = 0
    /// Width of G's class embedding, concatenated to z (conditional models only).
    public var classEmbedding = 50
    /// Normalisation between D's hidden convolutions.
    public var dNorm = DiscriminatorNorm.batch
    /// Spectral normalisation of every D convolution and of the projection embedding.
    public var spectralNorm = false
    /// How a conditional D sees the label.
    public var conditioning = Conditioning.projection

    /// W3's configuration.
    public init() {}

    /// Hidden levels of G (and of D): 2 for 28-pixel images (7, 14), 3 for 32 (4, 8, 16),
    /// 4 for 64 (4, 8, 16, 32).
    public var levels: Int {
        switch imageSize {
        case 28: return 2
        case 64: return 4
        default: return 3
        }
    }

    /// Side of G's first feature map and of D's last one: 7 for 28-pixel images, else 4.
    public var baseSize: Int { imageSize == 28 ? 7 : 4 }

    /// Whether the networks take class labels.
    public var isConditional: Bool { classes > 0 }

    /// Throws a `DCGANConfigError` naming the first field that is out of range.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ message: String) throws {
            if !ok { throw DCGANConfigError(field: field, message: message) }
        }
        try check([28, 32, 64].contains(imageSize), "imageSize", "must be 28, 32 or 64, got \(imageSize)")
        try check([1, 3].contains(channels), "channels", "must be 1 or 3, got \(channels)")
        try check(zDim > 0, "zDim", "must be positive, got \(zDim)")
        try check(gChannels > 0, "gChannels", "must be positive, got \(gChannels)")
        try check(dChannels > 0, "dChannels", "must be positive, got \(dChannels)")
        try check(classes >= 0, "classes", "must be 0 (unconditional) or more, got \(classes)")
        try check(classes == 0 || classEmbedding > 0, "classEmbedding", "must be positive, got \(classEmbedding)")
    }
}

/// A DCGAN configuration field out of range.
public struct DCGANConfigError: Error, Equatable, CustomStringConvertible {
    /// The field's name in `DCGANConfig`.
    public let field: String
    /// What is wrong with it.
    public let message: String

    /// "dcgan: FIELD MESSAGE".
    public var description: String { "dcgan: \(field) \(message)" }
}

/// DCGAN's initialisation (the PyTorch DCGAN tutorial's `weights_init`): every convolution
/// weight (plain, transposed or spectrally normalised) N(0, 0.02), every BatchNorm2d weight
/// N(1, 0.02) and bias 0, in module order; biases of convolutions keep PyTorch's default.
func dcganInitialize(_ module: Module, stream: inout RandomStream) {
    for (_, m) in module.namedModules() {
        switch m {
        case let conv as Conv2d: Init.normal(conv.weight, std: 0.02, stream: &stream)
        case let conv as ConvTranspose2d: Init.normal(conv.weight, std: 0.02, stream: &stream)
        case let conv as SNConv2d: Init.normal(conv.weightOrig, std: 0.02, stream: &stream)
        case let norm as BatchNorm2d:
            if let w = norm.weight { Init.normal(w, mean: 1, std: 0.02, stream: &stream) }
            if let b = norm.bias { Init.zeros(b) }
        default: break
        }
    }
}
