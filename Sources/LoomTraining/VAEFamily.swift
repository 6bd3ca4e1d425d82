import Foundation
import Yams
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// `model.type` of the VAE family.
public enum VAEModelType: String, CaseIterable, Sendable {
    case mlpVAE = "mlp_vae", convVAE = "conv_vae", klAutoencoder = "kl_autoencoder"

    /// The likelihood VAEs (a decoder of Bernoulli or Gaussian pixels, an ELBO to report).
    public var hasLikelihood: Bool { self != .klAutoencoder }
}

/// `vae.likelihood`: p(x|z) of the MLP and convolutional VAEs, on pixels scaled to [0, 1].
public enum VAELikelihood: String, CaseIterable, Sendable {
    /// Bernoulli with the decoder's logits (binary cross-entropy, as PyTorch's VAE example).
    case bernoulli
    /// N(sigmoid(decoder), vae.sigma²) per pixel (squared error / 2σ² plus the normaliser).
    case gaussian
}

/// The `vae:` section.
public struct VAESettings: Equatable {
    /// β of the β-VAE: loss = reconstruction NLL + β·KL (likelihood VAEs).
    public var beta = 1.0
    /// p(x|z) of the likelihood VAEs.
    public var likelihood = VAELikelihood.bernoulli
    /// σ of the Gaussian likelihood, on the [0, 1] pixel scale.
    public var sigma = 0.1
    /// Weight of the KL term of the KL autoencoder (W4: 1e-6).
    public var klWeight = 1e-6
    /// Weight of the adversarial loss (times the adaptive weight); 0: no discriminator.
    public var discWeight = 0.0
    /// The step from which the discriminator trains and its loss counts.
    public var discStart = 0
    /// Discriminator learning rate (0: `optimizer.lr`).
    public var lrD = 0.0
    /// PatchGAN depth (taming's n_layers) and width (ndf).
    public var discLayers = 3
    public var discChannels = 64
    /// Held-out images whose reconstruction PSNR is logged (from the test split when there is one).
    public var heldOut = 64
    /// Learning rates times the global batch (latent diffusion's `scale_lr`; W4: 4.5e-6 × batch).
    public var scaleLR = false

    public init() {}

    /// Whether the KL autoencoder trains a discriminator.
    public var adversarial: Bool { discWeight > 0 }
}

/// Variational autoencoders (`model.type` mlp_vae, conv_vae, kl_autoencoder; defaults of the
/// last: workload W4): `model:` is the network's shape, `vae:` the loss.
public struct VAEFamily: FamilySettings, Equatable {
    public static let modelTypes = VAEModelType.allCases.map(\.rawValue)
    public static let sections = ["vae"]
    /// `model.type`.
    public var type = VAEModelType.mlpVAE
    /// Side and channels of the images of the MLP and conv VAEs (the KL autoencoder's are in `autoencoder`).
    public var imageSize = 28
    public var channels = 1
    /// MLP: hidden units (400); conv: channels of the first conv (32).
    public var hidden = 400
    /// Flat latent size of the MLP (20) and conv (128) VAEs.
    public var latentDim = 20
    /// The KL autoencoder's shape (`model.type: kl_autoencoder`).
    public var autoencoder = KLAutoencoderConfig()
    /// The `vae:` section.
    public var vae = VAESettings()

    public init() {}

    public var modelType: String { type.rawValue }
    public var sampleShape: [Int] {
        type == .klAutoencoder ? [autoencoder.imageSize, autoencoder.imageSize, autoencoder.inChannels] : [imageSize, imageSize, channels]
    }
    public var classes: Int { 0 }
    public var summary: String {
        let s = sampleShape
        switch type {
        case .klAutoencoder:
            let l = autoencoder.latentShape
            return "KL autoencoder \(s[0])×\(s[1])×\(s[2]) → \(l[0])×\(l[1])×\(l[2]), kl_weight \(vae.klWeight)"
                + (vae.adversarial ? ", PatchGAN from step \(vae.discStart)" : "")
        case .mlpVAE, .convVAE:
            return "\(type == .mlpVAE ? "MLP" : "conv") VAE \(s[0])×\(s[1])×\(s[2]) → \(latentDim), \(vae.likelihood.rawValue), β \(vae.beta)"
        }
    }

    public var modelSize: ModelSize {
        let net: ModelSize
        switch type {
        case .mlpVAE: net = VAESize.mlp(imageShape: sampleShape, hidden: hidden, latent: latentDim)
        case .convVAE: net = VAESize.conv(imageShape: sampleShape, hidden: hidden, latent: latentDim)
        case .klAutoencoder: net = autoencoder.size
        }
        guard vae.adversarial else { return net }
        let d = VAESize.patchDiscriminator(inChannels: sampleShape[2], width: vae.discChannels, layers: vae.discLayers, imageSize: sampleShape[0])
        return VAESize.sum(net, d)
    }
    public var sizeKeys: [String] {
        (["model.image_size", "model.in_channels"] + Self.typeKeys[type]!.filter { $0 != "groups" }.map { "model.\($0)" })
            + (vae.adversarial ? ["vae.disc_channels", "vae.disc_layers"] : [])
    }

    /// The `model:` keys of each type besides `type`, `image_size` and `in_channels`.
    static let typeKeys: [VAEModelType: [String]] = [
        .mlpVAE: ["hidden", "latent_dim"], .convVAE: ["hidden", "latent_dim"],
        .klAutoencoder: ["base_channels", "channel_mult", "num_res_blocks", "latent_channels", "groups"],
    ]
    /// The `vae:` keys that only some types take.
    static let likelihoodKeys = ["beta", "likelihood", "sigma"]
    static let autoencoderKeys = ["kl_weight", "disc_weight", "disc_start", "lr_d", "disc_layers", "disc_channels"]

    public static func read(type raw: String, model m: ConfigReader, root: ConfigReader, config: RunConfig) throws -> VAEFamily {
        var f = VAEFamily()
        f.type = VAEModelType(rawValue: raw)!
        func notFor(_ path: String) -> ConfigError { .notForFamily(file: root.file, path: path, modelType: raw) }
        for (other, keys) in typeKeys where other != f.type {
            for key in keys where m.mapping?[key] != nil && !(typeKeys[f.type]!.contains(key)) { throw notFor("model.\(key)") }
        }
        switch f.type {
        case .mlpVAE, .convVAE:
            f.imageSize = try m.value("image_size", default: f.imageSize, Valid.within(1...4096))
            f.channels = try m.value("in_channels", default: f.channels) { [1, 3].contains($0) ? nil : "must be 1 or 3, found \($0)" }
            f.hidden = try m.value("hidden", default: f.type == .mlpVAE ? 400 : 32, Valid.within(1...65_536))
            f.latentDim = try m.value("latent_dim", default: f.type == .mlpVAE ? 20 : 128, Valid.within(1...65_536))
        case .klAutoencoder:
            var c = KLAutoencoderConfig()
            c.imageSize = try m.value("image_size", default: c.imageSize, Valid.within(1...4096))
            c.inChannels = try m.value("in_channels", default: c.inChannels) { [1, 3].contains($0) ? nil : "must be 1 or 3, found \($0)" }
            c.groups = try m.value("groups", default: c.groups, Valid.within(1...1024))
            c.baseChannels = try m.value("base_channels", default: c.baseChannels) {
                $0 > 0 && $0 <= 65_536 && $0 % c.groups == 0 ? nil : "must be a multiple of model.groups (\(c.groups)) in 1…65536, found \($0)"
            }
            c.channelMultipliers = try m.value("channel_mult", default: c.channelMultipliers) {
                $0.isEmpty || $0.count > 8 || $0.contains { $0 <= 0 || $0 > 64 } ? "must be a list of 1 to 8 integers in 1…64" : nil
            }
            c.resBlocks = try m.value("num_res_blocks", default: c.resBlocks, Valid.within(1...64))
            c.latentChannels = try m.value("latent_channels", default: c.latentChannels, Valid.within(1...4096))
            f.autoencoder = c
        }
        f.vae = try root.section("vae") { v in
            for key in f.type.hasLikelihood ? autoencoderKeys : likelihoodKeys where v.mapping?[key] != nil { throw notFor("vae.\(key)") }
            var s = VAESettings()
            if f.type.hasLikelihood {
                s.beta = try v.value("beta", default: s.beta) { $0 >= 0 && $0.isFinite ? nil : "must be 0 or more, found \($0)" }
                s.likelihood = try v.choice("likelihood", default: s.likelihood)
                // Keys that only apply with another key's value are read only then, so the resolved
                // config (stored in checkpoints) lists them only then.
                if s.likelihood == .gaussian {
                    s.sigma = try v.value("sigma", default: s.sigma) { $0 > 0 && $0.isFinite ? nil : "must be positive, found \($0)" }
                } else if try unused(v, "sigma", s.sigma) {
                    throw ConfigError.invalidValue(file: v.file, path: "vae.sigma", reason: "applies to vae.likelihood gaussian, not \(s.likelihood.rawValue)")
                }
            } else {
                s.klWeight = try v.value("kl_weight", default: s.klWeight) { $0 >= 0 && $0.isFinite ? nil : "must be 0 or more, found \($0)" }
                s.discWeight = try v.value("disc_weight", default: s.discWeight) { $0 >= 0 && $0.isFinite ? nil : "must be 0 (no discriminator) or more, found \($0)" }
                if s.adversarial {
                    s.discStart = try v.value("disc_start", default: s.discStart, Valid.within(0...1_000_000_000))
                    s.lrD = try v.value("lr_d", default: s.lrD) { $0 >= 0 && $0.isFinite ? nil : "must be 0 (optimizer.lr) or positive, found \($0)" }
                    s.discLayers = try v.value("disc_layers", default: s.discLayers, Valid.within(1...8))
                    s.discChannels = try v.value("disc_channels", default: s.discChannels, Valid.within(1...4096))
                } else {
                    for (key, set) in [("disc_start", try unused(v, "disc_start", s.discStart)), ("lr_d", try unused(v, "lr_d", s.lrD)),
                                       ("disc_layers", try unused(v, "disc_layers", s.discLayers)),
                                       ("disc_channels", try unused(v, "disc_channels", s.discChannels))] where set {
                        throw ConfigError.invalidValue(file: v.file, path: "vae.\(key)", reason: "needs a discriminator: set vae.disc_weight above 0")
                    }
                }
            }
            s.heldOut = try v.value("held_out", default: s.heldOut, Valid.within(1...10_000))
            s.scaleLR = try v.value("scale_lr", default: s.scaleLR)
            return s
        }
        try f.checkCrossKeys(file: root.file, config: config)
        return f
    }

    /// Whether `key`, which does not apply with the other keys' values, is set to something
    /// other than its default (its default is accepted, as older resolved configs list it).
    static func unused<T: ConfigValue & Equatable>(_ v: ConfigReader, _ key: String, _ defaultValue: T) throws -> Bool {
        guard v.mapping?[key] != nil else { return false }
        return try v.value(key, default: defaultValue) != defaultValue
    }

    /// The constraints between keys that no single key's range expresses.
    func checkCrossKeys(file: String, config: RunConfig) throws {
        func fail(_ path: String, _ reason: String) -> ConfigError { .invalidValue(file: file, path: path, reason: reason) }
        if config.train.gradAccum != 1 { throw ConfigError.notForFamily(file: file, path: "train.grad_accum", modelType: modelType) }
        switch type {
        case .convVAE where imageSize % 4 != 0:
            throw fail("model.image_size", "must be divisible by 4 (two stride-2 convolutions), found \(imageSize)")
        case .klAutoencoder:
            let c = autoencoder, levels = c.channelMultipliers.count
            guard c.imageSize % (1 << levels) == 0 else {
                throw fail("model.image_size", "must be divisible by \(1 << levels) (one ×2 downsampling per model.channel_mult level), found \(c.imageSize)")
            }
            if let m = c.channelMultipliers.first(where: { (c.baseChannels * $0) % c.groups != 0 }) {
                throw fail("model.channel_mult", "has \(m): \(c.baseChannels * m) channels do not split into model.groups \(c.groups)")
            }
            // The PatchGAN halves the side disc_layers times, then two k4 s1 p1 convs take 1 each.
            let patches = (c.imageSize >> vae.discLayers) - 2
            if vae.adversarial && patches < 1 {
                throw fail("vae.disc_layers", "\(vae.discLayers) leaves no patch of a \(c.imageSize)-pixel image (side/2^layers − 2 must be ≥ 1)")
            }
        default: break
        }
        if config.train.syncBatchNorm && !vae.adversarial {
            throw fail("train.sync_batch_norm", "has no batch norm to synchronise in model.type \(modelType) without a discriminator")
        }
    }

    /// The autoencoder this config describes, initialised from `stream`.
    public func makeModel(stream: inout RandomStream) -> any VariationalAutoencoder {
        switch type {
        case .mlpVAE: return MLPVAE(imageShape: sampleShape, hidden: hidden, latent: latentDim, stream: &stream)
        case .convVAE: return ConvVAE(imageShape: sampleShape, hidden: hidden, latent: latentDim, stream: &stream)
        case .klAutoencoder: return KLAutoencoder(autoencoder, stream: &stream)
        }
    }

    /// Images in [-1, 1] from the decoder's raw output: sigmoid means rescaled for the
    /// likelihood VAEs, the output itself for the KL autoencoder.
    public func images(fromDecoded out: Tensor) -> Tensor {
        type.hasLikelihood ? out.sigmoid() * 2 - 1 : out
    }

    public func makeTask(config: RunConfig, rank: Int, communicator: Communicator?) throws -> TrainingTask {
        VAETask(config: config, settings: self, rank: rank, communicator: communicator,
                heldOut: try HeldOutImages.load(config: config, count: vae.heldOut))
    }

    public func sample(config: RunConfig, checkpoint: CheckpointState, request: SampleRequest) throws -> (images: Tensor, columns: Int?) {
        try VAESampling.sample(family: self, config: config, checkpoint: checkpoint, request: request)
    }
}

extension RunConfig {
    /// The VAE family's settings, when this is a VAE config.
    public var vaeFamily: VAEFamily? { family as? VAEFamily }
}
