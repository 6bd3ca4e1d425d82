import LoomNN
import LoomTensor

/// The VAE of PyTorch's classic example (Kingma & Welling 2014), named as there:
///
///     x (H·W·C = 784) → fc1 (400) ReLU → fc21 → μ (20), fc22 → log σ² (20)
///     z (20) → fc3 (400) ReLU → fc4 (784) → Bernoulli logits (or the Gaussian mean's logits)
///
/// Images are flattened in NHWC order (the same as PyTorch's for one channel).
public final class MLPVAE: Module, VariationalAutoencoder {
    /// `[H, W, C]` of the images it encodes and decodes.
    public let imageShape: [Int]
    let fc1: Linear
    let fc21: Linear
    let fc22: Linear
    let fc3: Linear
    let fc4: Linear

    /// `imageShape` is `[H, W, C]`; PyTorch's default initialisation from `stream`.
    public init(imageShape: [Int], hidden: Int = 400, latent: Int = 20, stream: inout RandomStream) {
        precondition(imageShape.count == 3 && hidden > 0 && latent > 0, "MLPVAE: bad shape \(imageShape), hidden \(hidden), latent \(latent)")
        self.imageShape = imageShape
        let d = imageShape.reduce(1, *)
        fc1 = Linear(d, hidden, stream: &stream)
        fc21 = Linear(hidden, latent, stream: &stream)
        fc22 = Linear(hidden, latent, stream: &stream)
        fc3 = Linear(latent, hidden, stream: &stream)
        fc4 = Linear(hidden, d, stream: &stream)
        super.init()
    }

    public var latentShape: [Int] { [fc21.weight.shape[0]] }
    public var lastLayerWeight: Tensor { fc4.weight }

    public func encode(_ x: Tensor) -> DiagonalGaussian {
        let h = fc1(x.reshaped([x.shape[0], imageShape.reduce(1, *)])).relu()
        return DiagonalGaussian(mean: fc21(h), logVariance: fc22(h))
    }

    public func decode(_ z: Tensor) -> Tensor {
        fc4(fc3(z).relu()).reshaped([z.shape[0]] + imageShape)
    }
}
