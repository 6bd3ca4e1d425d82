import Foundation
import LoomNN
import LoomTensor

/// Shape of a DDPM U-Net (defaults: workload W1, `ddpm-unet-s`).
public struct UNetConfig: Equatable, Sendable {
    public var imageSize = 32
    public var inChannels = 1
    public var baseChannels = 32
    public var channelMultipliers = [1, 2, 2]
    public var resBlocks = 2
    /// Resolutions (in pixels) at which every ResBlock is followed by self-attention.
    public var attentionResolutions = [8]
    public var heads = 4
    public var dropout = 0.0
    /// Number of classes for conditioning; 0 = unconditional. A conditional model has one
    /// more embedding row, the null class used for classifier-free guidance.
    public var classes = 0
    public var groups = 8
    /// Whether the output has twice `inChannels` (a learned variance per element after the
    /// prediction, `diffusion.learn_sigma`).
    public var learnSigma = false

    public init() {}

    /// Width of the time embedding (4 × base channels, as in DDPM).
    public var embeddingWidth: Int { 4 * baseChannels }
}

/// The DDPM U-Net (Ho et al. 2020, as in guided-diffusion), NHWC activations:
/// stem conv → down levels (ResBlocks [+ attention], strided-conv downsample) → middle
/// (ResBlock, attention, ResBlock) → up levels (ResBlocks on skip-concatenated inputs
/// [+ attention], nearest ×2 + conv upsample) → GroupNorm, SiLU, conv.
public final class UNet: Module {
    public let config: UNetConfig
    /// The stream every dropout layer draws from; the trainer seeds it per rank and saves it.
    public let dropoutRandom = RandomSource(RandomStream(key: 0))
    let timeEmbedding: TimestepEmbedding
    let classEmbedding: Embedding?
    let stem: Conv2d
    let down: [UNetLevel]
    let middle: UNetMiddle
    let up: [UNetLevel]
    let outNorm: GroupNorm
    public let outConv: Conv2d

    /// A U-Net with PyTorch's default initialisation from `stream` (the output conv, the
    /// second conv of each ResBlock and each attention projection start at zero, as in
    /// guided-diffusion, so every block starts as the identity).
    public init(_ c: UNetConfig, stream: inout RandomStream) {
        config = c
        let emb = c.embeddingWidth, g = c.groups
        timeEmbedding = TimestepEmbedding(frequencies: c.baseChannels, width: emb, stream: &stream)
        classEmbedding = c.classes > 0 ? Embedding(c.classes + 1, emb, stream: &stream) : nil
        stem = Conv2d(c.inChannels, c.baseChannels, kernel: 3, padding: 1, stream: &stream)

        var channels = c.baseChannels, resolution = c.imageSize
        var skips = [channels]
        var down: [UNetLevel] = []
        for (level, mult) in c.channelMultipliers.enumerated() {
            let out = c.baseChannels * mult
            let attend = c.attentionResolutions.contains(resolution)
            var blocks: [ResBlock] = [], attention: [AttentionBlock] = []
            for _ in 0..<c.resBlocks {
                blocks.append(ResBlock(channels, out, embedding: emb, groups: g, dropout: c.dropout, dropoutRandom: dropoutRandom, stream: &stream))
                channels = out
                if attend { attention.append(AttentionBlock(channels, heads: c.heads, groups: g, stream: &stream)) }
                skips.append(channels)
            }
            var resample: Conv2d?
            if level < c.channelMultipliers.count - 1 {
                resample = Conv2d(channels, channels, kernel: 3, stride: 2, padding: 1, stream: &stream)
                skips.append(channels)
                resolution /= 2
            }
            down.append(UNetLevel(res: blocks, attn: attention, resample: resample))
        }
        self.down = down
        middle = UNetMiddle(channels, embedding: emb, heads: c.heads, groups: g, dropout: c.dropout, dropoutRandom: dropoutRandom, stream: &stream)

        var up: [UNetLevel] = []
        for (level, mult) in c.channelMultipliers.enumerated().reversed() {
            let out = c.baseChannels * mult
            let attend = c.attentionResolutions.contains(resolution)
            var blocks: [ResBlock] = [], attention: [AttentionBlock] = []
            for _ in 0...c.resBlocks {
                blocks.append(ResBlock(channels + skips.removeLast(), out, embedding: emb, groups: g, dropout: c.dropout, dropoutRandom: dropoutRandom, stream: &stream))
                channels = out
                if attend { attention.append(AttentionBlock(channels, heads: c.heads, groups: g, stream: &stream)) }
            }
            var resample: Conv2d?
            if level > 0 {
                resample = Conv2d(channels, channels, kernel: 3, padding: 1, stream: &stream)
                resolution *= 2
            }
            up.append(UNetLevel(res: blocks, attn: attention, resample: resample))
        }
        self.up = up
        outNorm = GroupNorm(groups: g, channels: channels)
        outConv = Conv2d(channels, c.inChannels * (c.learnSigma ? 2 : 1), kernel: 3, padding: 1, stream: &stream)
        Init.zeros(outConv.weight)
        Init.zeros(outConv.bias!)
        super.init()
    }

    /// Predicts the network target for images `x` `[N, H, W, C]` at timesteps `t`
    /// (`labels`: class per image, `classes` meaning the null class; nil = unconditional).
    public func callAsFunction(_ x: Tensor, timesteps t: [Int], labels: [Int]? = nil) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == config.imageSize && x.shape[2] == config.imageSize
                     && x.shape[3] == config.inChannels,
                     "UNet expects [N, \(config.imageSize), \(config.imageSize), \(config.inChannels)], got \(x.shape)")
        var emb = timeEmbedding(t)
        if let classEmbedding {
            emb = emb + classEmbedding(labels ?? Array(repeating: config.classes, count: t.count))
        }
        // Every ResBlock applies SiLU to the embedding first; doing it once is the same.
        let activated = emb.silu()

        var h = stem(x)
        var skips = [h]
        for level in down {
            for (i, block) in level.res.enumerated() {
                h = block(h, activated)
                if !level.attn.isEmpty { h = level.attn[i](h) }
                skips.append(h)
            }
            if let resample = level.resample {
                h = resample(h)
                skips.append(h)
            }
        }
        h = middle(h, activated)
        for level in up {
            for (i, block) in level.res.enumerated() {
                h = block(Tensor.concat([h, skips.removeLast()], axis: 3), activated)
                if !level.attn.isEmpty { h = level.attn[i](h) }
            }
            if let resample = level.resample { h = resample(h.upsampleNearest2x()) }
        }
        return outConv(outNorm.withSiLU(h))
    }
}

/// One resolution level: its ResBlocks, their attention blocks (empty when the level has
/// none) and the resampling conv (down: stride 2; up: after nearest ×2).
final class UNetLevel: Module {
    let res: [ResBlock]
    let attn: [AttentionBlock]
    let resample: Conv2d?

    init(res: [ResBlock], attn: [AttentionBlock], resample: Conv2d?) {
        self.res = res
        self.attn = attn
        self.resample = resample
        super.init()
    }
}

/// ResBlock, attention, ResBlock at the lowest resolution.
final class UNetMiddle: Module {
    let res1: ResBlock
    let attn: AttentionBlock
    let res2: ResBlock

    init(_ channels: Int, embedding: Int, heads: Int, groups: Int, dropout: Double, dropoutRandom: RandomSource,
         stream: inout RandomStream) {
        res1 = ResBlock(channels, channels, embedding: embedding, groups: groups, dropout: dropout, dropoutRandom: dropoutRandom, stream: &stream)
        attn = AttentionBlock(channels, heads: heads, groups: groups, stream: &stream)
        res2 = ResBlock(channels, channels, embedding: embedding, groups: groups, dropout: dropout, dropoutRandom: dropoutRandom, stream: &stream)
        super.init()
    }

    func callAsFunction(_ x: Tensor, _ embedding: Tensor) -> Tensor {
        res2(attn(res1(x, embedding)), embedding)
    }
}
