import LoomNN
import LoomTensor

/// The DCGAN generator (Radford et al. 2016), NHWC activations, named as the PyTorch DCGAN
/// tutorial's `nn.Sequential` (`main.0.weight`, `main.1.running_mean`, …). For W3 (32×32×3):
///
///     z(100) → ConvT(100→256, k4 s1 p0) BN ReLU → ConvT(256→128, k4 s2 p1) BN ReLU
///            → ConvT(128→64, k4 s2 p1) BN ReLU → ConvT(64→3, k4 s2 p1, bias) Tanh
///
/// The convolutions that feed a BatchNorm have no bias. 64-pixel images add a level on top
/// (512 channels); 28-pixel ones start with a 7×7 map and have one level fewer (7 → 14 → 28).
/// A conditional generator concatenates a learned class embedding (`embed.weight`) to z.
public final class DCGANGenerator: Module {
    public let config: DCGANConfig
    /// The class embedding concatenated to z (conditional models only).
    let embed: Embedding?
    /// ConvT, BN, ReLU per level, then the output ConvT and Tanh.
    let main: Sequential

    /// A generator with DCGAN's initialisation from `stream` (convolutions N(0, 0.02), BN
    /// weights N(1, 0.02); the class embedding keeps `nn.Embedding`'s N(0, 1), z's scale).
    public init(_ c: DCGANConfig, stream: inout RandomStream) {
        do { try c.validate() } catch { preconditionFailure("DCGANGenerator: \(error)") }
        config = c
        embed = c.isConditional ? Embedding(c.classes, c.classEmbedding, stream: &stream) : nil
        var layers: [any Layer] = []
        var width = c.zDim + (c.isConditional ? c.classEmbedding : 0)
        for level in 0..<c.levels {
            let out = c.gChannels << (c.levels - 1 - level)
            // The first level grows the 1×1 input to the base map; the others double the side.
            let up = level == 0
                ? ConvTranspose2d(width, out, kernel: c.baseSize, stride: 1, padding: 0, bias: false, stream: &stream)
                : ConvTranspose2d(width, out, kernel: 4, stride: 2, padding: 1, bias: false, stream: &stream)
            layers += [up, BatchNorm2d(out), ReLU()]
            width = out
        }
        layers += [ConvTranspose2d(width, c.channels, kernel: 4, stride: 2, padding: 1, stream: &stream), Tanh()]
        main = Sequential(layers)
        super.init()
        dcganInitialize(self, stream: &stream)
    }

    /// Images `[B, H, W, C]` in [-1, 1] from latents `z` `[B, zDim]`; `labels` (a class per
    /// image) are required by a conditional generator and ignored otherwise.
    public func callAsFunction(_ z: Tensor, labels: [Int]? = nil) -> Tensor {
        let c = config
        precondition(z.rank == 2 && z.shape[1] == c.zDim, "DCGANGenerator expects z of shape [B, \(c.zDim)], got \(z.shape)")
        let b = z.shape[0]
        var input = z
        if let embed {
            guard let labels else { preconditionFailure("DCGANGenerator: a conditional generator needs labels") }
            precondition(labels.count == b, "DCGANGenerator: \(labels.count) labels for a batch of \(b)")
            input = Tensor.concat([z, embed(labels)], axis: 1)
        }
        return main(input.reshaped([b, 1, 1, input.shape[1]]))
    }
}
