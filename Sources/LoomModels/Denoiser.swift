import LoomNN
import LoomTensor

/// A network that predicts the diffusion target from noisy images x_t `[N, H, W, C]`, their
/// timesteps and class labels (`classes` = the null class; nil = unconditional).
public protocol DenoisingNetwork: Module {
    func callAsFunction(_ x: Tensor, timesteps: [Int], labels: [Int]?) -> Tensor
    /// The stream its dropout layers draw from; the trainer seeds it per rank and saves it.
    var dropoutRandom: RandomSource { get }
}

extension UNet: DenoisingNetwork {}
extension DiT: DenoisingNetwork {}

/// The denoiser of a diffusion config: a U-Net (`model.type: unet`) or a DiT (`dit`).
public enum DenoiserConfig: Equatable, Sendable {
    case unet(UNetConfig)
    case dit(DiTConfig)

    /// `model.type`.
    public var type: String {
        switch self {
        case .unet: return "unet"
        case .dit: return "dit"
        }
    }

    public var imageSize: Int {
        switch self {
        case .unet(let c): return c.imageSize
        case .dit(let c): return c.imageSize
        }
    }

    public var inChannels: Int {
        switch self {
        case .unet(let c): return c.inChannels
        case .dit(let c): return c.inChannels
        }
    }

    /// Number of classes (0 = unconditional).
    public var classes: Int {
        switch self {
        case .unet(let c): return c.classes
        case .dit(let c): return c.classes
        }
    }

    /// One line for the training log.
    public var summary: String {
        switch self {
        case .unet(let c): return "U-Net, \(c.baseChannels) base channels, \(c.imageSize)×\(c.imageSize)×\(c.inChannels)"
        case .dit(let c):
            return "DiT, depth \(c.depth), hidden \(c.hiddenSize), \(c.heads) heads, patch \(c.patchSize), \(c.imageSize)×\(c.imageSize)×\(c.inChannels)"
        }
    }

    /// The same network with or without a learned-variance output.
    public func learningSigma(_ on: Bool) -> DenoiserConfig {
        switch self {
        case .unet(var c): c.learnSigma = on; return .unet(c)
        case .dit(var c): c.learnSigma = on; return .dit(c)
        }
    }

    /// Parameters and activations, computed without building the network.
    public var size: ModelSize {
        switch self {
        case .unet(let c): return c.size
        case .dit(let c): return c.size
        }
    }

    /// A freshly initialised network drawn from `stream`.
    public func make(stream: inout RandomStream) -> any DenoisingNetwork {
        switch self {
        case .unet(let c): return UNet(c, stream: &stream)
        case .dit(let c): return DiT(c, stream: &stream)
        }
    }
}
