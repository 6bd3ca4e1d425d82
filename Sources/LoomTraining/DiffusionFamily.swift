import LoomDiffusion
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// The `diffusion:` section: the noise schedule, training target and loss of a diffusion model.
public struct DiffusionSettings: Equatable {
    /// `diffusion.schedule`.
    public enum Schedule: String, CaseIterable, Sendable { case linear, cosine }
    /// `diffusion.loss_weighting`.
    public enum Weighting: String, CaseIterable, Sendable { case uniform, min_snr }

    public var timesteps = 1000
    public var schedule = Schedule.linear
    public var betaStart = 1e-4
    public var betaEnd = 0.02
    public var prediction = PredictionTarget.epsilon
    public var lossWeighting = Weighting.uniform
    public var minSNRGamma = 5.0
    public var offsetNoise = 0.0
    public var labelDropout = 0.1
    /// Learned variances (Improved DDPM): the network outputs v after its prediction and
    /// the loss adds vlbWeight·L_vlb.
    public var learnSigma = false
    public var vlbWeight = 0.001

    public init() {}

    /// The diffusion math these settings describe (schedule, target, loss weighting, offset noise).
    public var gaussianDiffusion: GaussianDiffusion {
        let noise: NoiseSchedule
        switch schedule {
        case .linear: noise = .linear(timesteps: timesteps, start: betaStart, end: betaEnd)
        case .cosine: noise = .cosine(timesteps: timesteps)
        }
        let weighting: LossWeighting
        switch lossWeighting {
        case .uniform: weighting = .uniform
        case .min_snr: weighting = .minSNR(gamma: minSNRGamma)
        }
        var d = GaussianDiffusion(schedule: noise, target: prediction, weighting: weighting, offsetNoise: Float(offsetNoise))
        (d.learnSigma, d.vlbWeight) = (learnSigma, vlbWeight)
        return d
    }
}

/// Diffusion with a U-Net (`model.type: unet`, defaults: workload W1) or a DiT: the `model:`
/// section is the denoiser's shape, `diffusion:` the process; with `first_stage:` the
/// denoiser models the latents of a frozen autoencoder (latent diffusion) instead of pixels.
public struct DiffusionFamily: FamilySettings, Equatable {
    public static let modelTypes = ["unet", "dit"]
    public static let sections = ["diffusion", "first_stage"]
    /// The denoiser: `model.type` unet (W1's defaults) or dit (W2's).
    public var network = DenoiserConfig.unet(UNetConfig())
    public var diffusion = DiffusionSettings()
    /// Latent diffusion's autoencoder (nil: pixel space).
    public var firstStage: FirstStageSettings?

    public init() {}

    public var modelType: String { network.type }
    /// The denoiser's `[H, W, C]`: an image, or with a first stage one latent.
    public var sampleShape: [Int] { [network.imageSize, network.imageSize, network.inChannels] }
    public var classes: Int { network.classes }
    public var summary: String { network.summary + (firstStage.map { ", on the latents of \($0.checkpoint)" } ?? "") }
    public var modelSize: ModelSize { network.size }
    public var sizeKeys: [String] {
        switch network {
        case .unet: return ["model.base_channels", "model.channel_mult", "model.num_res_blocks", "model.image_size", "model.attention_resolutions", "model.num_classes"]
        case .dit: return ["model.hidden_size", "model.depth", "model.patch_size", "model.image_size", "model.mlp_ratio"]
        }
    }
    /// The U-Net's shape when the denoiser is one.
    public var unet: UNetConfig? { if case .unet(let c) = network { return c } else { return nil } }
    /// The DiT's shape when the denoiser is one.
    public var dit: DiTConfig? { if case .dit(let c) = network { return c } else { return nil } }

    public static func read(type: String, model m: ConfigReader, root: ConfigReader, config: RunConfig) throws -> DiffusionFamily {
        var f = DiffusionFamily()
        f.network = type == "dit" ? .dit(try DiTConfig.read(m, file: root.file)) : .unet(try UNetConfig.read(m))
        f.diffusion = try root.section("diffusion") { d in
            var s = DiffusionSettings()
            s.timesteps = try d.value("timesteps", default: s.timesteps, Valid.within(1...100_000))
            s.schedule = try d.choice("schedule", default: s.schedule)
            s.betaStart = try d.value("beta_start", default: s.betaStart)
            s.betaEnd = try d.value("beta_end", default: s.betaEnd)
            s.prediction = try d.choice("prediction", default: s.prediction)
            s.lossWeighting = try d.choice("loss_weighting", default: s.lossWeighting)
            s.minSNRGamma = try d.value("min_snr_gamma", default: s.minSNRGamma, Valid.positiveNumber)
            s.offsetNoise = try d.value("offset_noise", default: s.offsetNoise) { $0 >= 0 && $0 <= 1 ? nil : "must be in [0, 1], found \($0)" }
            s.labelDropout = try d.value("label_dropout", default: s.labelDropout, Valid.unit)
            s.learnSigma = try d.value("learn_sigma", default: s.learnSigma)
            s.vlbWeight = try d.value("vlb_weight", default: s.vlbWeight, Valid.unit)
            return s
        }
        f.network = f.network.learningSigma(f.diffusion.learnSigma)
        // Read only when present, so that pixel-space configs resolve as before.
        if root.mapping?["first_stage"] != nil {
            f.firstStage = try root.section("first_stage") { fs in
                var s = FirstStageSettings()
                s.checkpoint = try fs.value("checkpoint", default: s.checkpoint) {
                    $0.isEmpty ? "must name the KL autoencoder's checkpoint (a file, a `latest` pointer or a run folder)" : nil
                }
                return s
            }
        }
        try f.checkCrossKeys(file: root.file, config: config)
        return f
    }

    /// The constraints between keys that no single key's range expresses.
    func checkCrossKeys(file: String, config: RunConfig) throws {
        func fail(_ path: String, _ reason: String) -> ConfigError { .invalidValue(file: file, path: path, reason: reason) }
        switch network {
        case .unet(let m): try Self.checkUNet(m, fail)
        case .dit(let m): try Self.checkDiT(m, fail)
        }
        let d = diffusion
        for (key, beta) in [("diffusion.beta_start", d.betaStart), ("diffusion.beta_end", d.betaEnd)] where !(beta > 0 && beta <= 1) {
            throw fail(key, "must be in (0, 1] (a variance per step), found \(beta)")
        }
        if d.betaStart > d.betaEnd { throw fail("diffusion.beta_start", "must not exceed diffusion.beta_end (\(d.betaEnd)), found \(d.betaStart)") }
        // The linear schedule scales both ends by 1000/T (guided-diffusion), so few steps raise them.
        let scaled = d.betaEnd * 1000 / Double(d.timesteps)
        if d.schedule == .linear && scaled > 1 {
            throw fail("diffusion.beta_end", "times 1000 / diffusion.timesteps (the linear schedule's scaling) is \(scaled), above 1: use more timesteps or a smaller beta_end")
        }
        if config.sample.steps > d.timesteps {
            throw fail("sample.steps", "must not exceed diffusion.timesteps (\(d.timesteps)), found \(config.sample.steps)")
        }
        if firstStage != nil && config.data.randomFlip {
            throw fail("data.random_flip", "does not apply with first_stage (the latents are encoded once; a mirrored latent is not the latent of the mirrored image)")
        }
    }

    /// The U-Net's skips must concatenate and its attention must split into heads.
    static func checkUNet(_ m: UNetConfig, _ fail: (String, String) -> ConfigError) throws {
        let levels = m.channelMultipliers.count, factor = 1 << (levels - 1)
        guard m.imageSize % factor == 0 else {
            throw fail("model.image_size", "must be divisible by \(factor) (2 to the power of the \(levels - 1) downsamplings of model.channel_mult's \(levels) levels), found \(m.imageSize)")
        }
        let resolutions = (0..<levels).map { m.imageSize >> $0 }
        if let r = m.attentionResolutions.first(where: { !resolutions.contains($0) }) {
            throw fail("model.attention_resolutions", "has \(r), which is no level's resolution (the levels of model.image_size \(m.imageSize) and model.channel_mult are \(resolutions))")
        }
        // Attention runs at the listed levels and always in the middle block (the last level's width).
        let attended = resolutions.indices.filter { m.attentionResolutions.contains(resolutions[$0]) }.map { m.baseChannels * m.channelMultipliers[$0] }
            + [m.baseChannels * m.channelMultipliers[levels - 1]]
        if let c = attended.first(where: { $0 % m.heads != 0 }) {
            throw fail("model.num_heads", "must divide the channels of every attention layer: \(c) channels do not split into \(m.heads) heads")
        }
    }

    /// The DiT's patches must tile the image, its heads split the width, and its 2-D
    /// positions need a width divisible by 4.
    static func checkDiT(_ m: DiTConfig, _ fail: (String, String) -> ConfigError) throws {
        if m.imageSize % m.patchSize != 0 {
            throw fail("model.patch_size", "must divide model.image_size (\(m.imageSize)) so that patches tile the image, found \(m.patchSize)")
        }
        if m.hiddenSize % m.heads != 0 {
            throw fail("model.num_heads", "must divide model.hidden_size (\(m.hiddenSize)), found \(m.heads)")
        }
        if m.hiddenSize % 4 != 0 {
            throw fail("model.hidden_size", "must be divisible by 4 (the 2-D sin-cos positions use a quarter each for sin and cos of row and column), found \(m.hiddenSize)")
        }
    }

    public func openTrainingData(config: RunConfig) throws -> ShardedDataset {
        guard let firstStage else { return try TrainingData.openImages(config) }
        return try TrainingData.openLatents(config, family: self, firstStage: firstStage).0
    }

    public func makeTask(config: RunConfig, rank: Int, communicator: Communicator?) throws -> TrainingTask {
        DiffusionTask(config: config, settings: self, rank: rank, communicator: communicator,
                      latent: try firstStage.map { try LatentSpace.forTraining(config: config, family: self, firstStage: $0) })
    }

    public func sample(config: RunConfig, checkpoint: CheckpointState, request: SampleRequest) throws -> (images: Tensor, columns: Int?) {
        if request.interpolate != nil { throw SampleOptionError("--interpolate does not apply to a diffusion model") }
        var cfg = config
        if let s = request.sampler {
            guard let t = SamplerType(rawValue: s) else {
                throw SampleOptionError("--sampler must be ddpm, ddim or dpm_solver, found '\(s)'")
            }
            cfg.sample.sampler = t
        }
        if let steps = request.steps { cfg.sample.steps = steps }
        if let eta = request.eta { cfg.sample.eta = eta }
        guard let weights = checkpoint.network("ema") ?? checkpoint.network("model") else {
            throw SampleOptionError("the checkpoint holds no /ema or /model weights")
        }
        var s = RandomStream(key: 0)
        let net = network.make(stream: &s)
        try net.loadStateDict(weights)
        if firstStage != nil {
            let space = try LatentSpace.recorded(in: checkpoint.metadata, checkpoint: request.checkpointPath)
            return (try LatentSampling.sample(config: cfg, family: self, model: net, space: space, request: request), nil)
        }
        if let images = request.initImages {
            guard Array(images.shape.dropFirst()) == sampleShape else {
                throw SampleOptionError("--init images are \(Array(images.shape.dropFirst())) but the model makes \(sampleShape) ([H, W, C])")
            }
            let edit = EditOptions(strength: request.strength ?? 1, mask: request.mask, resample: request.resample ?? 1)
            return (DiffusionSampling.edit(config: cfg, family: self, model: net, images: images, edit: edit, seed: request.seed,
                                           labels: request.label.map { [Int](repeating: $0, count: images.shape[0]) } ?? request.initLabels,
                                           guidance: request.guidance), nil)
        }
        return (DiffusionSampling.sample(config: cfg, family: self, model: net, count: request.count, seed: request.seed,
                                         label: request.label, guidance: request.guidance, first: request.first), nil)
    }

    /// The `[H, W, C]` of the images `loom sample` writes and `--init`/`--mask` take: the
    /// first stage's images for latent diffusion (read from its checkpoint), else `sampleShape`.
    public func outputShape(checkpoint: CheckpointState, path: String) throws -> [Int] {
        guard firstStage != nil else { return sampleShape }
        return try LatentSpace.recorded(in: checkpoint.metadata, checkpoint: path).stage.imageShape
    }
}

extension UNetConfig {
    /// Reads a `model:` section of type unet.
    static func read(_ m: ConfigReader) throws -> UNetConfig {
        var c = UNetConfig()
        c.groups = try m.value("groups", default: c.groups, Valid.within(1...1024))
        c.imageSize = try m.value("image_size", default: c.imageSize, Valid.within(1...1024))
        c.inChannels = try m.value("in_channels", default: c.inChannels, Valid.within(1...64))
        c.baseChannels = try m.value("base_channels", default: c.baseChannels) {
            (1...4096).contains($0) && $0 % c.groups == 0 ? nil : "must be a multiple of model.groups (\(c.groups)) between 1 and 4096, found \($0)"
        }
        c.channelMultipliers = try m.value("channel_mult", default: c.channelMultipliers) {
            (1...8).contains($0.count) && $0.allSatisfy { (1...64).contains($0) } ? nil : "must be a list of 1 to 8 integers between 1 and 64, found \($0)"
        }
        c.resBlocks = try m.value("num_res_blocks", default: c.resBlocks, Valid.within(1...32))
        c.attentionResolutions = try m.value("attention_resolutions", default: c.attentionResolutions) {
            $0.count <= 8 ? nil : "must list at most 8 resolutions (one per level), found \($0.count)"
        }
        c.heads = try m.value("num_heads", default: c.heads, Valid.within(1...1024))
        c.dropout = try m.value("dropout", default: c.dropout, Valid.fraction)
        c.classes = try m.value("num_classes", default: c.classes, Valid.within(0...100_000))
        return c
    }
}

extension DiTConfig {
    /// `model.preset` (the paper's `S/4`, `B/2`, …) sets depth, width, heads and patch size;
    /// the other keys override it, and without a preset default to W2.
    static func read(_ m: ConfigReader, file: String) throws -> DiTConfig {
        var c = DiTConfig()
        let names = DiTConfig.presets.keys.sorted().flatMap { size in [2, 4, 8].map { "\(size)/\($0)" } }
        let preset = try m.value("preset", default: "") { $0.isEmpty ? nil : Valid.oneOf(names)($0) }
        if !preset.isEmpty {
            let parts = preset.split(separator: "/")
            let size = DiTConfig.presets[String(parts[0])]!
            (c.depth, c.hiddenSize, c.heads, c.patchSize) = (size.depth, size.hidden, size.heads, Int(parts[1])!)
        }
        c.imageSize = try m.value("image_size", default: c.imageSize, Valid.within(1...1024))
        c.inChannels = try m.value("in_channels", default: c.inChannels, Valid.within(1...64))
        c.patchSize = try m.value("patch_size", default: c.patchSize, Valid.within(1...64))
        c.hiddenSize = try m.value("hidden_size", default: c.hiddenSize, Valid.within(1...8192))
        c.depth = try m.value("depth", default: c.depth, Valid.within(1...128))
        c.heads = try m.value("num_heads", default: c.heads, Valid.within(1...256))
        c.mlpRatio = try m.value("mlp_ratio", default: c.mlpRatio) { $0 > 0 && $0 <= 64 ? nil : "must be in (0, 64]" }
        c.classes = try m.value("num_classes", default: c.classes, Valid.within(0...100_000))
        return c
    }
}

extension RunConfig {
    /// The diffusion family's settings, when this is a diffusion config.
    public var diffusionFamily: DiffusionFamily? { family as? DiffusionFamily }
}
