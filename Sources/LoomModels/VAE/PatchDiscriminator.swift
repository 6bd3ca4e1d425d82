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
