import LoomNN
import LoomTensor

/// Shape of the KL-regularised autoencoder (defaults: workload W4, `vae-kl-f4`).
public struct KLAutoencoderConfig: Equatable, Sendable {
    /// Side of the square input, and its channels.
    public var imageSize = 32
    public var inChannels = 3
    /// Width of the first level (its multiplier 1).
    public var baseChannels = 64
    /// One level per multiplier; every level ends with a ×2 downsampling (W4: 32 → 16 → 8).
    public var channelMultipliers = [1, 2]
    /// ResBlocks per level, channels of the latent map, and GroupNorm's groups.
    public var resBlocks = 1
    public var latentChannels = 4
    public var groups = 32

    public init() {}

    /// The latent map `[h, w, c]` of one image.
    public var latentShape: [Int] {
        let side = imageSize >> channelMultipliers.count
        return [side, side, latentChannels]
    }
}

/// GN, SiLU, conv3×3, GN, SiLU, conv3×3, plus the input (through a 1×1 conv when the width
/// changes): latent diffusion's `ResnetBlock` without a time embedding. GroupNorm eps 1e-6.
final class AutoencoderResBlock: Module {
    let norm1: GroupNorm
    let conv1: Conv2d
    let norm2: GroupNorm
    let conv2: Conv2d
    let ninShortcut: Conv2d?

    init(_ inChannels: Int, _ outChannels: Int, groups: Int, stream: inout RandomStream) {
        norm1 = GroupNorm(groups: groups, channels: inChannels, eps: 1e-6)
        conv1 = Conv2d(inChannels, outChannels, kernel: 3, padding: 1, stream: &stream)
        norm2 = GroupNorm(groups: groups, channels: outChannels, eps: 1e-6)
        conv2 = Conv2d(outChannels, outChannels, kernel: 3, padding: 1, stream: &stream)
        ninShortcut = inChannels == outChannels ? nil : Conv2d(inChannels, outChannels, kernel: 1, stream: &stream)
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = conv2(norm2.withSiLU(conv1(norm1.withSiLU(x))))
        return (ninShortcut.map { $0(x) } ?? x) + h
    }
}

/// One encoder level (ResBlocks, then conv3×3 stride 2) or decoder level (nearest ×2 and
/// conv3×3, then ResBlocks).
final class AutoencoderLevel: Module {
    let block: [AutoencoderResBlock]
    let resample: Conv2d

    init(block: [AutoencoderResBlock], resample: Conv2d) {
        self.block = block
        self.resample = resample
        super.init()
    }
}

/// The encoder of W4: conv3×3(C→64); per level ResBlocks(→64·mult) and a stride-2 conv3×3;
/// a middle ResBlock; GN, SiLU, conv3×3 to 2·latent channels (mean and log-variance).
public final class AutoencoderEncoder: Module {
    let convIn: Conv2d
    let down: [AutoencoderLevel]
    let mid: AutoencoderResBlock
    let normOut: GroupNorm
    let convOut: Conv2d

    init(_ c: KLAutoencoderConfig, stream: inout RandomStream) {
        convIn = Conv2d(c.inChannels, c.baseChannels, kernel: 3, padding: 1, stream: &stream)
        var width = c.baseChannels
        var down: [AutoencoderLevel] = []
        for mult in c.channelMultipliers {
            var blocks: [AutoencoderResBlock] = []
            for _ in 0..<c.resBlocks {
                blocks.append(AutoencoderResBlock(width, c.baseChannels * mult, groups: c.groups, stream: &stream))
                width = c.baseChannels * mult
            }
            down.append(AutoencoderLevel(block: blocks, resample: Conv2d(width, width, kernel: 3, stride: 2, padding: 1, stream: &stream)))
        }
        self.down = down
        mid = AutoencoderResBlock(width, width, groups: c.groups, stream: &stream)
        normOut = GroupNorm(groups: c.groups, channels: width, eps: 1e-6)
        convOut = Conv2d(width, 2 * c.latentChannels, kernel: 3, padding: 1, stream: &stream)
        super.init()
    }

    /// Moments `[B, h, w, 2·latent]` (mean, then log-variance) of images `[B, H, W, C]`.
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(x)
        for level in down {
            for block in level.block { h = block(h) }
            h = level.resample(h)
        }
        return convOut(normOut.withSiLU(mid(h)))
    }
}

/// The decoder of W4, the encoder mirrored: conv3×3(latent→128), a middle ResBlock; per level
/// (deepest first) nearest ×2 + conv3×3, then ResBlocks back to the level's input width;
/// GN, SiLU, conv3×3 to C channels (no output activation, as latent diffusion).
public final class AutoencoderDecoder: Module {
    let convIn: Conv2d
    let mid: AutoencoderResBlock
    let up: [AutoencoderLevel]
    let normOut: GroupNorm
    /// The last layer (the adaptive adversarial weight compares gradients at its weight).
    public let convOut: Conv2d

    init(_ c: KLAutoencoderConfig, stream: inout RandomStream) {
        let widths = [c.baseChannels] + c.channelMultipliers.map { c.baseChannels * $0 }
        var width = widths.last!
        convIn = Conv2d(c.latentChannels, width, kernel: 3, padding: 1, stream: &stream)
        mid = AutoencoderResBlock(width, width, groups: c.groups, stream: &stream)
        var up: [AutoencoderLevel] = []
        for level in (0..<c.channelMultipliers.count).reversed() {
            let resample = Conv2d(width, width, kernel: 3, padding: 1, stream: &stream)
            var blocks: [AutoencoderResBlock] = []
            for _ in 0..<c.resBlocks {
                blocks.append(AutoencoderResBlock(width, widths[level], groups: c.groups, stream: &stream))
                width = widths[level]
            }
            up.append(AutoencoderLevel(block: blocks, resample: resample))
        }
        self.up = up
        normOut = GroupNorm(groups: c.groups, channels: width, eps: 1e-6)
        convOut = Conv2d(width, c.inChannels, kernel: 3, padding: 1, stream: &stream)
        super.init()
    }

    /// Images `[B, H, W, C]` from latents `[B, h, w, latent]`.
    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = mid(convIn(z))
        for level in up {
            h = level.resample(h.upsampleNearest2x())
            for block in level.block { h = block(h) }
        }
        return convOut(normOut.withSiLU(h))
    }
}

/// The KL-regularised autoencoder of latent diffusion's first stage (Rombach et al. 2022),
/// workload W4: 32×32×3 → 8×8×4 latents (mean and log-variance from the encoder) → 32×32×3,
/// 1,475,979 parameters. PyTorch's default initialisation.
public final class KLAutoencoder: Module, VariationalAutoencoder {
    /// The shape it was built with.
    public let config: KLAutoencoderConfig
    let encoder: AutoencoderEncoder
    let decoder: AutoencoderDecoder

    public init(_ c: KLAutoencoderConfig, stream: inout RandomStream) {
        precondition(c.baseChannels % c.groups == 0 && c.imageSize % (1 << c.channelMultipliers.count) == 0,
                     "KLAutoencoder: widths must split into \(c.groups) groups and the side must halve \(c.channelMultipliers.count) times")
        config = c
        encoder = AutoencoderEncoder(c, stream: &stream)
        decoder = AutoencoderDecoder(c, stream: &stream)
        super.init()
    }

    public var latentShape: [Int] { config.latentShape }
    public var lastLayerWeight: Tensor { decoder.convOut.weight }

    public func encode(_ x: Tensor) -> DiagonalGaussian {
        let c = config
        precondition(x.rank == 4 && x.shape[1] == c.imageSize && x.shape[2] == c.imageSize && x.shape[3] == c.inChannels,
                     "KLAutoencoder expects [B, \(c.imageSize), \(c.imageSize), \(c.inChannels)], got \(x.shape)")
        return DiagonalGaussian(moments: encoder(x))
    }

    public func decode(_ z: Tensor) -> Tensor { decoder(z) }
}
