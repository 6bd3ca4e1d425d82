import LoomNN
import LoomTensor

/// A convolutional VAE: two stride-2 convolutions to a flat latent, and the mirrored decoder
/// with transposed convolutions. For 28×28×1 and the defaults (hidden 32, latent 128):
///
///     encoder: Conv(1→32, k4 s2 p1) ReLU → Conv(32→64, k4 s2 p1) ReLU → 7·7·64
///              → fcMu → μ (128), fcLogVariance → log σ² (128)
///     decoder: z → fcDecode (7·7·64) ReLU → ConvT(64→32, k4 s2 p1) ReLU → ConvT(32→1, k4 s2 p1) → logits
public final class ConvVAE: Module, VariationalAutoencoder {
    /// `[H, W, C]` of the images it encodes and decodes.
    public let imageShape: [Int]
    let hidden: Int
    let encoder: Sequential
    let fcMu: Linear
    let fcLogVariance: Linear
    let fcDecode: Linear
    let decoder: Sequential
    let outConv: ConvTranspose2d

    /// `imageShape` `[H, W, C]` with H and W divisible by 4; PyTorch's default initialisation.
    public init(imageShape: [Int], hidden: Int = 32, latent: Int = 128, stream: inout RandomStream) {
        precondition(imageShape.count == 3 && imageShape[0] % 4 == 0 && imageShape[1] % 4 == 0,
                     "ConvVAE: image sides must be divisible by 4, got \(imageShape)")
        self.imageShape = imageShape
        self.hidden = hidden
        let c = imageShape[2], flat = (imageShape[0] / 4) * (imageShape[1] / 4) * 2 * hidden
        encoder = Sequential(Conv2d(c, hidden, kernel: 4, stride: 2, padding: 1, stream: &stream), ReLU(),
                             Conv2d(hidden, 2 * hidden, kernel: 4, stride: 2, padding: 1, stream: &stream), ReLU())
        fcMu = Linear(flat, latent, stream: &stream)
        fcLogVariance = Linear(flat, latent, stream: &stream)
        fcDecode = Linear(latent, flat, stream: &stream)
        decoder = Sequential(ConvTranspose2d(2 * hidden, hidden, kernel: 4, stride: 2, padding: 1, stream: &stream), ReLU())
        outConv = ConvTranspose2d(hidden, c, kernel: 4, stride: 2, padding: 1, stream: &stream)
        super.init()
    }

    public var latentShape: [Int] { [fcMu.weight.shape[0]] }
    public var lastLayerWeight: Tensor { outConv.weight }

    public func encode(_ x: Tensor) -> DiagonalGaussian {
        let h = encoder(x)
        let flat = h.reshaped([x.shape[0], h.count / x.shape[0]])
        return DiagonalGaussian(mean: fcMu(flat), logVariance: fcLogVariance(flat))
    }

    public func decode(_ z: Tensor) -> Tensor {
        let b = z.shape[0]
        let h = fcDecode(z).relu().reshaped([b, imageShape[0] / 4, imageShape[1] / 4, 2 * hidden])
        return outConv(decoder(h))
    }
}
