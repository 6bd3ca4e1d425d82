import Foundation
import LoomTensor
import LoomTraining
import Testing

@Suite struct ConfigTests {
    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loom-config-\(UUID().uuidString).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaultsAreW1() throws {
        let c = try RunConfig.load(file: nil)
        let m = try #require(c.diffusionFamily?.unet)
        #expect(m.baseChannels == 32 && m.channelMultipliers == [1, 2, 2] && m.heads == 4)
        #expect(c.optimizer.lr == 2e-4 && c.ema.decay == 0.9999 && c.train.batchSize == 64)
    }

    @Test func fileThenOverrides() throws {
        let path = try write("""
            seed: 7
            model:
              base_channels: 64
              channel_mult: [1, 2]
              attention_resolutions: [16]
            optimizer: {lr: 1e-3}
            """)
        let c = try RunConfig.load(file: path, overrides: ["optimizer.lr=1e-4", "train.max_steps=500", "data.path=/tmp/x"])
        let m = try #require(c.diffusionFamily?.unet)
        #expect(c.seed == 7 && m.baseChannels == 64 && m.channelMultipliers == [1, 2])
        #expect(c.optimizer.lr == 1e-4 && c.train.maxSteps == 500 && c.data.path == "/tmp/x")
        #expect(c.resolvedYAML.contains("max_steps: 500"))
        // The resolved YAML reads back to the same config.
        let again = try RunConfig.load(file: try write(c.resolvedYAML))
        #expect(again.diffusionFamily == c.diffusionFamily && again.optimizer.lr == c.optimizer.lr && again.train.maxSteps == 500)
    }

    @Test func unknownKeyNamesPathAndSuggests() throws {
        let path = try write("optimizer:\n  lrr: 0.1\n")
        #expect(throws: ConfigError.unknownKey(file: path, path: "optimizer.lrr", suggestion: "optimizer.lr")) {
            try RunConfig.load(file: path)
        }
        #expect(throws: ConfigError.unknownKey(file: "(defaults)", path: "train.batchsize", suggestion: "train.batch_size")) {
            try RunConfig.load(file: nil, overrides: ["train.batchsize=3"])
        }
        #expect(throws: ConfigError.unknownKey(file: "(defaults)", path: "sead", suggestion: "seed")) {
            try RunConfig.load(file: nil, overrides: ["sead=3"])
        }
    }

    @Test func wrongTypesAndValues() throws {
        let path = try write("train:\n  batch_size: many\n")
        #expect(throws: ConfigError.wrongType(file: path, path: "train.batch_size", expected: "an integer", found: "'many'")) {
            try RunConfig.load(file: path)
        }
        #expect(throws: ConfigError.invalidValue(file: "(defaults)", path: "diffusion.schedule",
                                                 reason: "must be one of linear, cosine, found 'cosin'; did you mean 'cosine'?")) {
            try RunConfig.load(file: nil, overrides: ["diffusion.schedule=cosin"])
        }
        #expect(throws: ConfigError.wrongType(file: "(defaults)", path: "model", expected: "a mapping of keys", found: "'3'")) {
            try RunConfig.load(file: nil, overrides: ["model=3"])
        }
        #expect(throws: ConfigError.invalidValue(file: "(defaults)", path: "conv_algorithm",
                                                 reason: "must be one of auto, direct, found 'winograd'")) {
            try RunConfig.load(file: nil, overrides: ["conv_algorithm=winograd"])
        }
        #expect(try RunConfig.load(file: nil, overrides: ["conv_algorithm=direct"]).convAlgorithm == .direct)
        #expect(try RunConfig.load(file: nil).convAlgorithm == .auto)
        #expect(throws: ConfigError.badOverride("lr")) { try RunConfig.load(file: nil, overrides: ["lr"]) }
        let messages = [ConfigError.unknownKey(file: "a.yaml", path: "x.y", suggestion: "x.z").description]
        #expect(messages == ["a.yaml: unknown key 'x.y'; did you mean 'x.z'?"])
    }

    @Test func missingFileIsAClearError() {
        #expect(throws: ConfigError.unreadable(file: "/nonexistent/cfg.yaml", reason: "no such file")) {
            try RunConfig.load(file: "/nonexistent/cfg.yaml")
        }
    }

    // MARK: Families

    @Test func modelTypePicksTheFamily() throws {
        let gan = try RunConfig.load(file: nil, overrides: ["model.type=dcgan", "gan.loss=hinge", "model.spectral_norm=true",
                                                             "model.d_norm=none", "model.in_channels=1"])
        let f = try #require(gan.ganFamily)
        #expect(f.gan.loss == .hinge && f.model.spectralNorm && f.model.dNorm == .none && f.model.channels == 1)
        #expect(gan.diffusionFamily == nil)
        #expect(gan.family.sampleShape == [32, 32, 1])
        // The resolved YAML reads back to the same family settings.
        let again = try RunConfig.load(file: try write(gan.resolvedYAML))
        #expect(again.ganFamily == f)
        #expect(!gan.resolvedYAML.contains("diffusion"))
        #expect(try RunConfig.load(file: nil).diffusionFamily != nil)
    }

    @Test func anotherFamilysKeyDoesNotApply() throws {
        let path = try write("model:\n  type: dcgan\ndiffusion:\n  timesteps: 500\n")
        #expect(throws: ConfigError.notForFamily(file: path, path: "diffusion.timesteps", modelType: "dcgan")) {
            try RunConfig.load(file: path)
        }
        #expect((try? RunConfig.load(file: path)) == nil)
        let message = ConfigError.notForFamily(file: path, path: "diffusion.timesteps", modelType: "dcgan").description
        #expect(message == "\(path): 'diffusion.timesteps' does not apply to model.type dcgan")
        #expect(throws: ConfigError.notForFamily(file: "(defaults)", path: "model.base_channels", modelType: "dcgan")) {
            try RunConfig.load(file: nil, overrides: ["model.type=dcgan", "model.base_channels=64"])
        }
        #expect(throws: ConfigError.notForFamily(file: "(defaults)", path: "gan.loss", modelType: "unet")) {
            try RunConfig.load(file: nil, overrides: ["gan.loss=hinge"])
        }
        #expect(throws: ConfigError.notForFamily(file: "(defaults)", path: "model.z_dim", modelType: "unet")) {
            try RunConfig.load(file: nil, overrides: ["model.z_dim=64"])
        }
        // A key no family knows is still an unknown key with a suggestion.
        #expect(throws: ConfigError.unknownKey(file: "(defaults)", path: "model.z_dimm", suggestion: "model.z_dim")) {
            try RunConfig.load(file: nil, overrides: ["model.type=dcgan", "model.z_dimm=64"])
        }
    }

    @Test func ditPresetsRangesAndCrossKeyConstraints() throws {
        func reason(_ overrides: [String]) -> String? {
            do { _ = try RunConfig.load(file: nil, overrides: ["model.type=dit"] + overrides); return nil } catch { return "\(error)" }
        }
        // The paper's table 1: S = depth 12, width 384, 6 heads; the patch from the name.
        let s4 = try #require(try RunConfig.load(file: nil, overrides: ["model.type=dit", "model.preset=S/4"]).diffusionFamily?.dit)
        #expect(s4.depth == 12 && s4.hiddenSize == 384 && s4.heads == 6 && s4.patchSize == 4)
        let xl2 = try #require(try RunConfig.load(file: nil, overrides: ["model.type=dit", "model.preset=XL/2", "model.depth=3"]).diffusionFamily?.dit)
        #expect(xl2.depth == 3 && xl2.hiddenSize == 1152 && xl2.heads == 16 && xl2.patchSize == 2)
        #expect(reason(["model.preset=S/3"])?.contains("'model.preset' must be one of B/2, B/4, B/8, L/2") == true)
        #expect(reason(["model.patch_size=5"]) == "(defaults): 'model.patch_size' must divide model.image_size (32) so that patches tile the image, found 5")
        #expect(reason(["model.num_heads=5"]) == "(defaults): 'model.num_heads' must divide model.hidden_size (192), found 5")
        #expect(reason(["model.hidden_size=198", "model.num_heads=3"])?.contains("'model.hidden_size' must be divisible by 4") == true)
        #expect(reason(["model.depth=0"]) == "(defaults): 'model.depth' must be between 1 and 128, found 0")
        // diffusion.learn_sigma doubles the denoiser's output channels, for either type.
        let learned = try RunConfig.load(file: nil, overrides: ["model.type=dit", "diffusion.learn_sigma=true"]).diffusionFamily
        #expect(learned?.dit?.outChannels == 2 && learned?.diffusion.gaussianDiffusion.learnSigma == true)
        #expect(try RunConfig.load(file: nil, overrides: ["diffusion.learn_sigma=true"]).diffusionFamily?.unet?.learnSigma == true)
        #expect(reason(["diffusion.vlb_weight=2"]) == "(defaults): 'diffusion.vlb_weight' must be in [0, 1], found 2.0")
        // A U-Net key with a DiT is another model type's key, not an unknown one.
        #expect(reason(["model.channel_mult=[1, 2]"]) == "(defaults): 'model.channel_mult' does not apply to model.type dit")
        #expect(reason(["model.type=unet", "model.patch_size=4"]) == "(defaults): 'model.patch_size' does not apply to model.type unet")
    }

    @Test func ganRangesAndCrossKeyConstraints() throws {
        func reason(_ overrides: [String]) -> String? {
            do { _ = try RunConfig.load(file: nil, overrides: ["model.type=dcgan"] + overrides); return nil } catch {
                return "\(error)"
            }
        }
        #expect(reason(["gan.n_critic=0"]) == "(defaults): 'gan.n_critic' must be between 1 and 100, found 0")
        #expect(reason(["model.image_size=48"]) == "(defaults): 'model.image_size' must be 28, 32 or 64, found 48")
        #expect(reason(["model.in_channels=2"]) == "(defaults): 'model.in_channels' must be 1 or 3, found 2")
        #expect(reason(["gan.loss=wgan-gp"])?.contains("did you mean 'wgan_gp'?") == true)
        #expect(reason(["gan.loss=wgan_gp"])?.contains("'model.d_norm' must be none for gan.loss wgan_gp") == true)
        #expect(reason(["gan.loss=wgan_gp", "model.d_norm=none"]) == nil)
        #expect(reason(["gan.loss=wgan", "gan.r1_gamma=10"])?.contains("'gan.r1_gamma' applies to the bce and hinge losses") == true)
        #expect(reason(["train.grad_accum=2"]) == "(defaults): 'train.grad_accum' does not apply to model.type dcgan")
        #expect(reason(["model.type=stylegan"])?.contains("'model.type' must be one of unet, dit, dcgan, mlp_vae, conv_vae, kl_autoencoder, classifier, found 'stylegan'") == true)
        #expect(reason(["model.d_conditioning=labels"])?.contains("must be one of projection, channels") == true)
    }

    @Test func diffusionCrossKeyConstraints() throws {
        func reason(_ overrides: [String]) -> String? {
            do { _ = try RunConfig.load(file: nil, overrides: overrides); return nil } catch { return "\(error)" }
        }
        #expect(reason(["model.num_heads=3"]) == "(defaults): 'model.num_heads' must divide the channels of every attention layer: 64 channels do not split into 3 heads")
        #expect(reason(["model.num_heads=8"]) == nil)
        #expect(reason(["model.image_size=30"])?.contains("'model.image_size' must be divisible by 4") == true)
        #expect(reason(["model.attention_resolutions=[16,5]"]) == "(defaults): 'model.attention_resolutions' has 5, which is no level's resolution (the levels of model.image_size 32 and model.channel_mult are [32, 16, 8])")
        #expect(reason(["diffusion.beta_end=2"]) == "(defaults): 'diffusion.beta_end' must be in (0, 1] (a variance per step), found 2.0")
        #expect(reason(["diffusion.beta_start=0"])?.contains("'diffusion.beta_start' must be in (0, 1]") == true)
        #expect(reason(["diffusion.beta_start=0.05"])?.contains("must not exceed diffusion.beta_end") == true)
        #expect(reason(["sample.steps=2000"]) == "(defaults): 'sample.steps' must not exceed diffusion.timesteps (1000), found 2000")
        #expect(reason(["sample.steps=1000"]) == nil)
        #expect(reason(["diffusion.timesteps=10", "sample.steps=10"])?.contains("'diffusion.beta_end' times 1000 / diffusion.timesteps (the linear schedule's scaling) is 2.0, above 1") == true)
        #expect(reason(["diffusion.timesteps=10", "sample.steps=10", "diffusion.schedule=cosine"]) == nil)
        #expect(reason(["diffusion.prediction=eps"]) == "(defaults): 'diffusion.prediction' must be one of epsilon, v, x0, found 'eps'")
    }
}
