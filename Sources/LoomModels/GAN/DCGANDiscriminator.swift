import LoomNN
import LoomTensor

/// The DCGAN discriminator, NHWC activations, named as the PyTorch DCGAN tutorial's
/// `nn.Sequential` (`main.0.weight`, …). For W3 (32×32×3):
///
///     Conv(3→64, k4 s2 p1, bias) LReLU(0.2) → Conv(64→128, k4 s2 p1) BN LReLU
///       → Conv(128→256, k4 s2 p1) BN LReLU → Conv(256→1, k4 s1 p0, bias) → logit [B]
///
/// It mirrors `DCGANGenerator`: 64-pixel images add a level (512 channels), 28-pixel ones have
/// one level fewer and a 7×7 last convolution. Options (`DCGANConfig`): the hidden
/// normalisation (batch, none — the convolutions then get a bias —, or layer), spectral
/// normalisation of every convolution and of the projection embedding, and for conditional
/// models either a projection head (`embed.weight`) or one-hot label planes on the input.
public final class DCGANDiscriminator: Module {
    public let config: DCGANConfig
    /// Conv, LReLU, then (Conv, norm, LReLU) per further level, then the logit conv ψ.
    let main: Sequential
    /// The projection discriminator's class embedding, `[classes, top channels]`.
    let embed: (any EmbeddingLayer)?

    /// A discriminator with DCGAN's initialisation from `stream`: convolutions and the
    /// projection embedding N(0, 0.02), BN weights N(1, 0.02).
    public init(_ c: DCGANConfig, stream: inout RandomStream) {
        do { try c.validate() } catch { preconditionFailure("DCGANDiscriminator: \(error)") }
        config = c
        func conv(_ i: Int, _ o: Int, kernel: Int, stride: Int, padding: Int, bias: Bool) -> any Layer {
            c.spectralNorm
                ? SNConv2d(i, o, kernel: kernel, stride: stride, padding: padding, bias: bias, stream: &stream)
                : Conv2d(i, o, kernel: kernel, stride: stride, padding: padding, bias: bias, stream: &stream)
        }
        let labelPlanes = c.isConditional && c.conditioning == .channels ? c.classes : 0
        var layers: [any Layer] = [conv(c.channels + labelPlanes, c.dChannels, kernel: 4, stride: 2, padding: 1, bias: true),
                                   LeakyReLU(0.2)]
        var width = c.dChannels
        for _ in 1..<c.levels {
            let out = width * 2
            layers.append(conv(width, out, kernel: 4, stride: 2, padding: 1, bias: c.dNorm == .none))
            switch c.dNorm {
            case .batch: layers.append(BatchNorm2d(out))
            case .layer: layers.append(GroupNorm(groups: 1, channels: out))
            case .none: break
            }
            layers.append(LeakyReLU(0.2))
            width = out
        }
        layers.append(conv(width, 1, kernel: c.baseSize, stride: 1, padding: 0, bias: true))
        main = Sequential(layers)
        if c.isConditional && c.conditioning == .projection {
            let table: any EmbeddingLayer = c.spectralNorm
                ? SNEmbedding(c.classes, width, stream: &stream) : Embedding(c.classes, width, stream: &stream)
            embed = table
        } else {
            embed = nil
        }
        super.init()
        dcganInitialize(self, stream: &stream)
        switch embed {
        case let table as Embedding: Init.normal(table.weight, std: 0.02, stream: &stream)
        case let table as SNEmbedding: Init.normal(table.weightOrig, std: 0.02, stream: &stream)
        default: break
        }
    }

    /// Logits `[B]` for images `x` `[B, H, W, C]`; `labels` (a class per image) are required
    /// by a conditional discriminator and ignored otherwise.
    public func callAsFunction(_ x: Tensor, labels: [Int]? = nil) -> Tensor {
        let c = config
        precondition(x.rank == 4 && x.shape[1] == c.imageSize && x.shape[2] == c.imageSize && x.shape[3] == c.channels,
                     "DCGANDiscriminator expects [B, \(c.imageSize), \(c.imageSize), \(c.channels)], got \(x.shape)")
        let b = x.shape[0]
        guard c.isConditional else { return main(x).reshaped([b]) }
        guard let labels else { preconditionFailure("DCGANDiscriminator: a conditional discriminator needs labels") }
        precondition(labels.count == b, "DCGANDiscriminator: \(labels.count) labels for a batch of \(b)")
        precondition(labels.allSatisfy { (0..<c.classes).contains($0) }, "DCGANDiscriminator: label out of 0..<\(c.classes)")
        switch c.conditioning {
        case .channels:
            return main(Tensor.concat([x, oneHotPlanes(labels, size: c.imageSize, classes: c.classes)], axis: 3)).reshaped([b])
        case .projection:
            // φ(x): everything before the last conv ψ.
            let features = main(x, layers: 0..<(main.layers.count - 1))
            let psi = main.layers.last!(features).reshaped([b])
            let pooled = features.sum(axes: [1, 2])                       // Σ_hw φ(x), [B, C]
            return psi + (embed!(labels) * pooled).sum(axes: [1])
        }
    }
}

/// `[B, size, size, classes]`: 1 in channel `labels[i]` of image i, 0 elsewhere (a constant).
func oneHotPlanes(_ labels: [Int], size: Int, classes: Int) -> Tensor {
    let out = Tensor.zeros([labels.count, size, size, classes])
    let p = out.data
    for (i, label) in labels.enumerated() {
        for pixel in 0..<(size * size) { p[(i * size * size + pixel) * classes + label] = 1 }
    }
    return out
}
