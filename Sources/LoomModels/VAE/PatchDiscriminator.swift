import LoomNN
import LoomTensor

/// The PatchGAN discriminator of pix2pix as taming-transformers' `NLayerDiscriminator`
/// (latent diffusion's first-stage discriminator), named `main.0`, `main.1`, …:
///
///     Conv(C→64, k4 s2 p1) LReLU(0.2)
///     → (n−1) × [Conv(k4 s2 p1, no bias) BN LReLU]   (width doubles, at most 8·64)
///     → Conv(k4 s1 p1, no bias) BN LReLU → Conv(→1, k4 s1 p1) → a logit per patch
///
/// Initialised as taming's `weights_init`: convolutions N(0, 0.02), BN weights N(1, 0.02).
public final class PatchDiscriminator: Module {
    let main: Sequential

    /// `layers` is taming's `n_layers` (3); `width` its `ndf` (64).
    public init(inChannels: Int, width: Int = 64, layers: Int = 3, stream: inout RandomStream) {
        precondition(layers >= 1 && width > 0, "PatchDiscriminator: layers \(layers), width \(width)")
        var seq: [any Layer] = [Conv2d(inChannels, width, kernel: 4, stride: 2, padding: 1, stream: &stream), LeakyReLU(0.2)]
        var mult = 1
        for n in 1..<layers {
            let previous = mult
            mult = min(1 << n, 8)
            seq += [Conv2d(width * previous, width * mult, kernel: 4, stride: 2, padding: 1, bias: false, stream: &stream),
                    BatchNorm2d(width * mult), LeakyReLU(0.2)]
        }
        let previous = mult
        mult = min(1 << layers, 8)
        seq += [Conv2d(width * previous, width * mult, kernel: 4, stride: 1, padding: 1, bias: false, stream: &stream),
                BatchNorm2d(width * mult), LeakyReLU(0.2),
                Conv2d(width * mult, 1, kernel: 4, stride: 1, padding: 1, stream: &stream)]
        main = Sequential(seq)
        super.init()
        dcganInitialize(self, stream: &stream)
    }

    /// Patch logits `[B, h, w, 1]` for images `[B, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { main(x) }
}

/// The losses of latent diffusion's `LPIPSWithDiscriminator` (without LPIPS) on patch logits.
public enum AutoencoderAdversarialLoss {
    /// Hinge loss of the discriminator: ½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂))).
    public static func discriminatorHinge(real: Tensor, fake: Tensor) -> Tensor {
        ((1 - real).relu().mean() + (1 + fake).relu().mean()) * 0.5
    }

    /// The autoencoder's adversarial loss: −mean D(x̂).
    public static func generator(fake: Tensor) -> Tensor { -fake.mean() }

    /// ‖∇_w L_rec‖ / (‖∇_w L_g‖ + 1e-4) clamped to [0, 1e4], times `discWeight`, where w is the
    /// decoder's last layer (taming's `calculate_adaptive_weight`). Keeps both graphs.
    public static func adaptiveWeight(reconstruction: Tensor, generator: Tensor, lastLayer: Tensor, discWeight: Double) -> Double {
        let gRec = grad(of: reconstruction, wrt: [lastLayer], retainGraph: true)[0]
        let gAdv = grad(of: generator, wrt: [lastLayer], retainGraph: true)[0]
        func norm(_ t: Tensor) -> Double { (0..<t.count).reduce(0.0) { $0 + Double(t.data[$1] * t.data[$1]) }.squareRoot() }
        let w = norm(gRec) / (norm(gAdv) + 1e-4)
        return min(max(w, 0), 1e4) * discWeight
    }
}
