import Foundation
import LoomModels
import LoomNN
import LoomTensor
import Testing

/// The VAE family's models and math: the KL term, the reparameterisation gradient, the
/// reference shapes and parameter counts, and the adversarial losses.
@Suite struct VAETests {
    /// μ and log σ² of 6 latents, covering σ < 1, σ = 1 and σ > 1.
    static let mu: [Float] = [0, 0.5, -1.2, 2, 0.1, -0.3]
    static let logVar: [Float] = [0, -1, 0.7, -2.5, 1.2, 0.3]

    @Test func klMatchesItsClosedFormAndAMonteCarloEstimate() {
        let q = DiagonalGaussian(mean: Tensor(Self.mu, shape: [1, 6]), logVariance: Tensor(Self.logVar, shape: [1, 6]))
        // Closed form, written as KL(N(μ, σ²) ‖ N(0, 1)) = log(1/σ) + (σ² + μ²)/2 − 1/2, in Double.
        var closed = 0.0
        for (m, lv) in zip(Self.mu, Self.logVar) {
            let sigma = exp(Double(lv) / 2)
            closed += log(1 / sigma) + (sigma * sigma + Double(m * m)) / 2 - 0.5
        }
        #expect(abs(Double(q.klSum().item) - closed) < 1e-5 * closed)

        // Monte Carlo: E_q[log q(z) − log p(z)] over 200,000 draws, within 4 standard errors.
        let n = 200_000
        var stream = RandomStream(seed: 11, purpose: .noise)
        let eps = Tensor.normal([n, 6], stream: &stream)
        var sum = 0.0, squares = 0.0
        for i in 0..<n {
            var logRatio = 0.0
            for j in 0..<6 {
                let e = Double(eps.data[i * 6 + j]), sigma = exp(Double(Self.logVar[j]) / 2)
                let z = Double(Self.mu[j]) + sigma * e
                logRatio += (-0.5 * e * e - log(sigma)) - (-0.5 * z * z)   // the 2π terms cancel
            }
            sum += logRatio
            squares += logRatio * logRatio
        }
        let mean = sum / Double(n), standardError = ((squares / Double(n) - mean * mean) / Double(n)).squareRoot()
        #expect(abs(mean - closed) < 4 * standardError, "Monte Carlo \(mean) ± \(standardError), closed form \(closed)")
    }

    @Test func logVarianceIsClampedAsInLatentDiffusion() {
        let q = DiagonalGaussian(mean: Tensor.zeros([1, 2]), logVariance: Tensor([50, -80], shape: [1, 2]))
        #expect(q.logVariance.array == [20, -30])
        #expect(abs(q.std.data[0] - Float(exp(10.0))) < 1)
    }

    /// f(z) = Σ a·z² + b·z has E_q f = Σ a(μ² + σ²) + bμ, so ∂/∂μ = 2aμ + b and
    /// ∂/∂log σ² = a·σ². The reparameterised estimate over 100,000 draws must match them.
    @Test func reparameterisedGradientMatchesTheAnalyticGradient() {
        let a: [Float] = [1, -0.5, 2, 0.3, 1.5, -1], b: [Float] = [0.2, 1, -0.7, 0, 0.5, 2]
        let n = 100_000
        let mu = Tensor(Self.mu, shape: [1, 6], requiresGrad: true), lv = Tensor(Self.logVar, shape: [1, 6], requiresGrad: true)
        var stream = RandomStream(seed: 12, purpose: .noise)
        let eps = Tensor.normal([n, 6], stream: &stream)
        let q = DiagonalGaussian(mean: mu.expanded(to: [n, 6]), logVariance: lv.expanded(to: [n, 6]))
        let z = q.sample(epsilon: eps)
        let f = ((z.square() * Tensor(a, shape: [1, 6])) + z * Tensor(b, shape: [1, 6])).sum() * (1 / Float(n))
        f.backward()
        for j in 0..<6 {
            let sigma2 = exp(Self.logVar[j])
            let dMu = 2 * a[j] * Self.mu[j] + b[j], dLv = a[j] * sigma2
            // Per draw the estimates are 2a·z + b and (2a·z + b)·ε·σ/2 = (2aμ + b)·ε·σ/2 + a·σ²·ε²,
            // with standard deviations 2|a|σ and √(((2aμ + b)σ/2)² + 2a²σ⁴): 5 standard errors allowed.
            let sigma = sigma2.squareRoot(), root = Float(n).squareRoot()
            let tolMu = 5 * 2 * abs(a[j]) * sigma / root + 1e-5
            let tolLv = 5 * (((dMu * sigma / 2) * (dMu * sigma / 2)) + 2 * a[j] * a[j] * sigma2 * sigma2).squareRoot() / root + 1e-5
            #expect(abs(mu.grad!.data[j] - dMu) < tolMu, "∂/∂μ[\(j)] \(mu.grad!.data[j]) vs \(dMu)")
            #expect(abs(lv.grad!.data[j] - dLv) < tolLv, "∂/∂logσ²[\(j)] \(lv.grad!.data[j]) vs \(dLv)")
        }
    }

    @Test func w4HasTheReferenceParameterCount() {
        var s = RandomStream(seed: 0, purpose: .initialization)
        let ae = KLAutoencoder(KLAutoencoderConfig(), stream: &s)
        // WORKLOADS.md: an exact W4 implementation prints 1,475,979.
        #expect(ae.parameterCount == 1_475_979)
        // One input channel: conv_in loses 2·64·9 weights, conv_out 2·(64·9 + 1).
        var c = KLAutoencoderConfig()
        c.inChannels = 1
        let gray = KLAutoencoder(c, stream: &s)
        #expect(gray.parameterCount == 1_475_979 - 2 * 64 * 9 - 2 * (64 * 9 + 1))
        #expect(gray.latentShape == [8, 8, 4])
        let x = Tensor.uniform([2, 32, 32, 1], low: -1, high: 1, stream: &s)
        let q = gray.encode(x)
        #expect(q.mean.shape == [2, 8, 8, 4] && q.logVariance.shape == [2, 8, 8, 4])
        #expect(gray.decode(q.mean).shape == [2, 32, 32, 1])
        let names = Set(ae.namedParameters().map(\.0))
        for name in ["encoder.convIn.weight", "encoder.down.1.block.0.ninShortcut.weight", "encoder.down.0.resample.weight",
                     "encoder.mid.norm1.weight", "encoder.convOut.bias", "decoder.up.0.block.0.ninShortcut.weight",
                     "decoder.up.1.resample.weight", "decoder.convOut.weight"] {
            #expect(names.contains(name), "missing \(name)")
        }
    }

    @Test func mlpAndConvVAEShapes() {
        var s = RandomStream(seed: 0, purpose: .initialization)
        let mlp = MLPVAE(imageShape: [28, 28, 1], stream: &s)
        // PyTorch's example: fc1 784·400+400, fc21 and fc22 400·20+20, fc3 20·400+400, fc4 400·784+784.
        #expect(mlp.parameterCount == 652_824)
        let x = Tensor.uniform([3, 28, 28, 1], low: -1, high: 1, stream: &s)
        #expect(mlp.encode(x).mean.shape == [3, 20] && mlp.decode(mlp.encode(x).mean).shape == [3, 28, 28, 1])
        let conv = ConvVAE(imageShape: [28, 28, 1], stream: &s)
        // Conv 1·32·16+32, conv 32·64·16+64, fcMu and fcLogVariance 3136·128+128, fcDecode 128·3136+3136,
        // ConvT 64·32·16+32, ConvT 32·1·16+1.
        #expect(conv.parameterCount == 544 + 32_832 + 2 * 401_536 + 404_544 + 32_800 + 513)
        #expect(conv.decode(conv.encode(x).mean).shape == [3, 28, 28, 1])
    }

    @Test func patchDiscriminatorAsTaming() {
        var s = RandomStream(seed: 0, purpose: .initialization)
        let d = PatchDiscriminator(inChannels: 3, stream: &s)
        // 3·64·16+64, 64·128·16 + BN 256, 128·256·16 + BN 512, 256·512·16 + BN 1024, 512·16+1.
        #expect(d.parameterCount == 3_136 + 131_072 + 256 + 524_288 + 512 + 2_097_152 + 1_024 + 8_193)
        // 32 → 16 → 8 → 4, then two k4 s1 p1 convolutions: 3, 2.
        #expect(d(Tensor.zeros([2, 32, 32, 3])).shape == [2, 2, 2, 1])
    }

    @Test func hingeAndAdaptiveWeight() {
        let real = Tensor([2, 0.5, -1, 0], shape: [4]), fake = Tensor([-2, 0.5, 1, 0], shape: [4])
        // ½(mean(0, 0.5, 2, 1) + mean(0, 1.5, 2, 1)) = ½(0.875 + 1.125).
        #expect(abs(AutoencoderAdversarialLoss.discriminatorHinge(real: real, fake: fake).item - 1.0) < 1e-6)
        #expect(AutoencoderAdversarialLoss.generator(fake: fake).item == 0.125)
        // L_rec = Σ 3w, L_g = Σ w² at w = (1, 2): gradients (3, 3) and (2, 4), norms √18 and √20.
        let w = Tensor([1, 2], shape: [2], requiresGrad: true)
        let weight = AutoencoderAdversarialLoss.adaptiveWeight(reconstruction: (w * 3).sum(), generator: w.square().sum(),
                                                               lastLayer: w, discWeight: 0.5)
        #expect(abs(weight - 0.5 * 18.0.squareRoot() / (20.0.squareRoot() + 1e-4)) < 1e-6)
    }

    /// The config loader's parameter counts (computed without building) equal the built networks'.
    @Test func sizesWithoutBuildingAreExact() {
        var s = RandomStream(key: 1)
        func built(_ m: Module) -> Double { Double(m.parameterCount) }
        var c = KLAutoencoderConfig()
        #expect(c.size.parameters == 1_475_979)
        c.inChannels = 1; c.baseChannels = 8; c.groups = 4; c.channelMultipliers = [1, 3, 2]; c.resBlocks = 2; c.latentChannels = 3
        #expect(c.size.parameters == built(KLAutoencoder(c, stream: &s)))
        #expect(VAESize.mlp(imageShape: [28, 28, 1], hidden: 400, latent: 20).parameters == 652_824)
        #expect(VAESize.conv(imageShape: [32, 32, 3], hidden: 8, latent: 5).parameters == built(ConvVAE(imageShape: [32, 32, 3], hidden: 8, latent: 5, stream: &s)))
        for layers in [1, 2, 3, 5] {
            #expect(VAESize.patchDiscriminator(inChannels: 3, width: 8, layers: layers, imageSize: 64).parameters
                    == built(PatchDiscriminator(inChannels: 3, width: 8, layers: layers, stream: &s)), "layers \(layers)")
        }
    }
}
