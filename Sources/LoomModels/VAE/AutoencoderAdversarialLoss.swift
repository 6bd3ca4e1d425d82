import LoomNN
import LoomTensor

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
