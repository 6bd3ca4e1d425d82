import Foundation
import LoomModels
import LoomStorage
import LoomTensor
import LoomTraining
import Testing

/// Tiny VAEs on toy sets: the ELBO improves past what ignoring the latent can reach, and a
/// trained autoencoder reconstructs held-out images.
@Suite struct VAEToyTests {
    /// 8×8 images with one bright row (row k of 8, pixels ±1): 8 patterns.
    static func bars(_ count: Int, stream: inout RandomStream) -> Tensor {
        let x = Tensor(repeating: -1, shape: [count, 8, 8, 1])
        for i in 0..<count {
            let row = stream.nextInt(below: 8)
            for col in 0..<8 { x.data[i * 64 + row * 8 + col] = 1 }
        }
        return x
    }

    @Test func elboOfATinyVAEImprovesPastTheMeanImage() throws {
        let config = try RunConfig.parse(yaml: nil, name: "(toy)", overrides: [
            "model.type=mlp_vae", "model.image_size=8", "model.hidden=64", "model.latent_dim=4",
            "optimizer.type=adam", "optimizer.lr=0.003", "train.batch_size=32"])
        let task = VAETask(config: config, settings: config.vaeFamily!, rank: 0, communicator: nil)
        var data = RandomStream(seed: 5, purpose: .data)
        func elbo(_ metrics: [(String, Double)]) -> Double { metrics.first { $0.0 == "elbo" }!.1 }
        let first = elbo(try task.trainStep { Batch(images: Self.bars(32, stream: &data), labels: []) })
        var last: [Double] = []
        for step in 0..<300 {
            let m = try task.trainStep { Batch(images: Self.bars(32, stream: &data), labels: []) }
            if step >= 280 { last.append(elbo(m)) }
        }
        let final = last.reduce(0, +) / Double(last.count)
        // A decoder that ignores z does best with the mean image: p = 1/8 per pixel, so
        // −ELBO ≥ 64 · H(1/8) = 24.1 nats. The optimum is about log 8 = 2.1 nats. Measured once:
        // −45.5 nats at the first step, −5.2 over steps 281–300.
        let h = -(0.125 * log(0.125) + 0.875 * log(0.875))
        #expect(first < -64 * h, "the untrained ELBO \(first) should be below the mean image's \(-64 * h)")
        #expect(final > -0.5 * 64 * h, "ELBO after 300 steps \(final) (first step \(first)), mean image \(-64 * h)")
    }

    /// 16×16 images: a bright disc of random centre and radius on a dark background.
    static func discs(_ count: Int, stream: inout RandomStream) -> Tensor {
        let x = Tensor(uninitialized: [count, 16, 16, 1])
        for i in 0..<count {
            let cx = 4 + 8 * stream.nextUniform(), cy = 4 + 8 * stream.nextUniform(), r = 2 + 3 * stream.nextUniform()
            for y in 0..<16 {
                for xx in 0..<16 {
                    let d = ((Float(xx) - cx) * (Float(xx) - cx) + (Float(y) - cy) * (Float(y) - cy)).squareRoot()
                    x.data[i * 256 + y * 16 + xx] = max(-1, min(1, (r - d) * 2))   // a soft edge
                }
            }
        }
        return x
    }

    @Test func trainedAutoencoderReconstructsHeldOutImages() throws {
        let config = try RunConfig.parse(yaml: nil, name: "(toy)", overrides: [
            "model.type=kl_autoencoder", "model.image_size=16", "model.in_channels=1", "model.base_channels=16",
            "model.groups=4", "model.latent_channels=2", "optimizer.type=adam", "optimizer.lr=0.002", "train.batch_size=16"])
        let family = config.vaeFamily!
        let task = VAETask(config: config, settings: family, rank: 0, communicator: nil)
        var data = RandomStream(seed: 6, purpose: .data)
        var held = RandomStream(seed: 7, purpose: .data)
        let test = Self.discs(32, stream: &held)
        let before = VAESampling.metrics(test, VAESampling.reconstruct(task.model, family: family, test)).psnr
        for _ in 0..<150 { _ = try task.trainStep { Batch(images: Self.discs(16, stream: &data), labels: []) } }
        let after = VAESampling.metrics(test, VAESampling.reconstruct(task.model, family: family, test)).psnr
        // The mean image of the set as the reconstruction of every image: what ignoring the input reaches.
        let mean = Tensor(uninitialized: test.shape)
        for j in 0..<256 {
            var s: Float = 0
            for i in 0..<32 { s += test.data[i * 256 + j] }
            for i in 0..<32 { mean.data[i * 256 + j] = s / 32 }
        }
        let baseline = VAESampling.metrics(test, mean).psnr
        // Threshold measured once (this test, on the 2-core development machine, 2026-12-05):
        // 150 steps reached 25.7 dB (untrained 6.5 dB, mean image 11.1 dB); 22 dB leaves room
        // for other CPUs' rounding.
        #expect(after > 22, "held-out PSNR \(after) dB after 150 steps (untrained \(before), mean image \(baseline))")
        #expect(after > baseline + 6)
    }

    @Test func psnrAndL1OfKnownDifferences() {
        let a = Tensor(repeating: 0, shape: [2, 2, 2, 1])
        let b = Tensor([0.2, 0.2, 0.2, 0.2, -0.1, 0.1, -0.1, 0.1], shape: [2, 2, 2, 1])
        // On the [0, 1] scale the errors are 0.1 and 0.05: PSNR 20 and 26.02 dB, L1 0.1 and 0.05.
        let m = VAESampling.metrics(a, b)
        #expect(abs(m.psnr - (20 + 20 * log10(20.0)) / 2) < 1e-4)
        #expect(abs(m.l1 - 0.075) < 1e-6)
    }
}

/// VAE configs with mistakes: one message naming the key.
@Suite struct VAEConfigTests {
    func error(_ overrides: [String]) -> String {
        do {
            _ = try RunConfig.parse(yaml: nil, name: "vae.yaml", overrides: overrides)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func ganKeysInAVAEConfig() {
        #expect(error(["model.type=mlp_vae", "gan.loss=hinge"]) == "vae.yaml: 'gan.loss' does not apply to model.type mlp_vae")
        #expect(error(["model.type=kl_autoencoder", "model.z_dim=64"]) == "vae.yaml: 'model.z_dim' does not apply to model.type kl_autoencoder")
    }

    @Test func keysOfAnotherVAEType() {
        #expect(error(["model.type=kl_autoencoder", "model.latent_dim=8"]) == "vae.yaml: 'model.latent_dim' does not apply to model.type kl_autoencoder")
        #expect(error(["model.type=conv_vae", "vae.kl_weight=0.1"]) == "vae.yaml: 'vae.kl_weight' does not apply to model.type conv_vae")
        #expect(error(["model.type=kl_autoencoder", "vae.beta=4"]) == "vae.yaml: 'vae.beta' does not apply to model.type kl_autoencoder")
    }

    @Test func rangesAndCrossKeys() {
        #expect(error(["model.type=mlp_vae", "model.latent_dim=0"]) == "vae.yaml: 'model.latent_dim' must be between 1 and 65536, found 0")
        #expect(error(["model.type=kl_autoencoder", "model.latent_channels=0"]) == "vae.yaml: 'model.latent_channels' must be between 1 and 4096, found 0")
        #expect(error(["model.type=mlp_vae", "vae.likelihood=poisson"]).hasPrefix("vae.yaml: 'vae.likelihood' must be one of bernoulli, gaussian, found 'poisson'"))
        #expect(error(["model.type=mlp_vae", "vae.sigma=0.2"]) == "vae.yaml: 'vae.sigma' applies to vae.likelihood gaussian, not bernoulli")
        #expect(error(["model.type=kl_autoencoder", "vae.disc_start=100"]) == "vae.yaml: 'vae.disc_start' needs a discriminator: set vae.disc_weight above 0")
        #expect(error(["model.type=kl_autoencoder", "model.image_size=30"]).contains("'model.image_size' must be divisible by 4"))
        #expect(error(["model.type=kl_autoencoder", "model.base_channels=48"]) == "vae.yaml: 'model.base_channels' must be a multiple of model.groups (32) in 1…65536, found 48")
        #expect(error(["model.type=kl_autoencoder", "vae.disc_weight=0.5", "vae.disc_layers=4"]).contains("'vae.disc_layers' 4 leaves no patch of a 32-pixel image"))
        #expect(error(["model.type=conv_vae", "train.grad_accum=2"]) == "vae.yaml: 'train.grad_accum' does not apply to model.type conv_vae")
    }

    /// Every VAE config's resolved YAML (what checkpoints store) reads back as the same config.
    @Test(arguments: ["vae-fashion", "conv-vae-fashion", "autoencoder-fashion", "vae-kl-f4"]) func resolvedConfigReadsBack(_ name: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for extra in [[], ["vae-fashion", "conv-vae-fashion"].contains(name) ? ["vae.likelihood=gaussian", "vae.sigma=0.2"] : ["vae.disc_weight=0.5", "vae.disc_start=10"]] {
            let c = try RunConfig.load(file: url.appendingPathComponent("configs/\(name).yaml").path, overrides: extra)
            let again = try RunConfig.parse(yaml: c.resolvedYAML, name: "(resolved)")
            #expect(again.vaeFamily == c.vaeFamily && again.resolvedYAML == c.resolvedYAML)
        }
        // A value of a key that does not apply is refused, its default accepted.
        #expect(error(["model.type=mlp_vae", "vae.sigma=0.1"]) == "no error")
    }

    @Test func w4ConfigReadsAsW4() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let c = try RunConfig.load(file: url.appendingPathComponent("configs/vae-kl-f4.yaml").path)
        let f = try #require(c.vaeFamily)
        #expect(f.autoencoder == KLAutoencoderConfig() && f.vae.klWeight == 1e-6 && !f.vae.adversarial && f.vae.scaleLR)
        #expect(c.optimizer.type == .adam && c.optimizer.lr == 4.5e-6 && c.train.batchSize == 32)
    }
}
