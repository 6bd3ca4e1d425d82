import Foundation
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// The `gan:` section: the adversarial loss and how the two networks take turns.
public struct GANSettings: Equatable {
    public var loss = GANLoss.bce
    /// Discriminator (critic) updates per generator update; each takes a fresh real batch.
    public var nCritic = 1
    /// WGAN: critic weights are clamped to [−clip, clip] after every critic update.
    public var clip = 0.01
    /// WGAN-GP: weight λ of the gradient penalty.
    public var gpLambda = 10.0
    /// R1 penalty γ/2·‖∇ₓD(x)‖² on real images (0: off; bce and hinge only).
    public var r1Gamma = 0.0
    /// Lazy R1: the penalty (scaled by this) every this many critic updates.
    public var r1Every = 1
    /// Learning rates of G and D (0: `optimizer.lr`).
    public var lrG = 0.0
    public var lrD = 0.0

    public init() {}
}

/// GANs (`model.type: dcgan`, defaults: workload W3): `model:` is the DCGAN pair's shape,
/// `gan:` the loss and schedule of updates.
public struct GANFamily: FamilySettings, Equatable {
    public static let modelTypes = ["dcgan"]
    public static let sections = ["gan"]
    public var model = DCGANConfig()
    public var gan = GANSettings()

    public init() {}

    public var modelType: String { "dcgan" }
    public var sampleShape: [Int] { [model.imageSize, model.imageSize, model.channels] }
    public var classes: Int { model.classes }
    public var modelSize: ModelSize { model.size }
    public var sizeKeys: [String] { ["model.g_channels", "model.d_channels", "model.z_dim", "model.image_size", "model.num_classes", "model.class_embedding"] }
    public var summary: String {
        "DCGAN \(gan.loss.rawValue), \(model.imageSize)×\(model.imageSize)×\(model.channels), n_critic \(gan.nCritic)"
    }

    public static func read(type: String, model m: ConfigReader, root: ConfigReader, config: RunConfig) throws -> GANFamily {
        var f = GANFamily()
        var c = DCGANConfig()
        c.imageSize = try m.value("image_size", default: c.imageSize) {
            [28, 32, 64].contains($0) ? nil : "must be 28, 32 or 64, found \($0)"
        }
        c.channels = try m.value("in_channels", default: c.channels) { [1, 3].contains($0) ? nil : "must be 1 or 3, found \($0)" }
        c.zDim = try m.value("z_dim", default: c.zDim, Valid.within(1...4096))
        c.gChannels = try m.value("g_channels", default: c.gChannels, Valid.within(1...1024))
        c.dChannels = try m.value("d_channels", default: c.dChannels, Valid.within(1...1024))
        c.classes = try m.value("num_classes", default: c.classes, Valid.within(0...100_000))
        c.classEmbedding = try m.value("class_embedding", default: c.classEmbedding, Valid.within(1...4096))
        c.dNorm = try m.choice("d_norm", default: c.dNorm)
        c.spectralNorm = try m.value("spectral_norm", default: c.spectralNorm)
        c.conditioning = try m.choice("d_conditioning", default: c.conditioning)
        f.model = c

        f.gan = try root.section("gan") { g in
            var s = GANSettings()
            s.loss = try g.choice("loss", default: s.loss)
            s.nCritic = try g.value("n_critic", default: s.nCritic, Valid.within(1...100))
            s.clip = try g.value("clip", default: s.clip) { $0 >= 1e-6 && $0 <= 1000 ? nil : "must be between 1e-06 and 1000 (a weight bound), found \($0)" }
            s.gpLambda = try g.value("gp_lambda", default: s.gpLambda, Valid.nonNegativeNumber)
            s.r1Gamma = try g.value("r1_gamma", default: s.r1Gamma) { $0.isFinite && $0 >= 0 ? nil : "must be 0 (off) or a finite positive number, found \($0)" }
            s.r1Every = try g.value("r1_every", default: s.r1Every, Valid.within(1...1_000_000))
            s.lrG = try g.value("lr_g", default: s.lrG) { $0 == 0 || Valid.positiveFloat($0) == nil ? nil : "must be 0 (optimizer.lr) or a number between 1e-30 and 1e30 (float32), found \($0)" }
            s.lrD = try g.value("lr_d", default: s.lrD) { $0 == 0 || Valid.positiveFloat($0) == nil ? nil : "must be 0 (optimizer.lr) or a number between 1e-30 and 1e30 (float32), found \($0)" }
            // Cross-key constraints.
            if s.r1Gamma > 0 && (s.loss == .wgan || s.loss == .wganGP) {
                throw ConfigError.invalidValue(file: g.file, path: "gan.r1_gamma",
                                               reason: "applies to the bce and hinge losses, not to gan.loss \(s.loss.rawValue)")
            }
            if s.loss == .wganGP && c.dNorm == .batch {
                throw ConfigError.invalidValue(file: g.file, path: "model.d_norm",
                                               reason: "must be none for gan.loss wgan_gp (the gradient penalty is per sample; batch norm mixes the samples)")
            }
            if s.r1Gamma > 0 && c.dNorm == .batch && config.train.syncBatchNorm {
                throw ConfigError.invalidValue(file: g.file, path: "train.sync_batch_norm",
                                               reason: "cannot be combined with gan.r1_gamma > 0 and model.d_norm batch: the R1 penalty needs second-order gradients through batch norm, which synchronised batch norm does not provide (use model.d_norm none)")
            }
            return s
        }
        if config.train.gradAccum != 1 {
            throw ConfigError.notForFamily(file: root.file, path: "train.grad_accum", modelType: type)
        }
        return f
    }

    public func makeTask(config: RunConfig, rank: Int, communicator: Communicator?) throws -> TrainingTask {
        GANTask(config: config, settings: self, rank: rank, communicator: communicator)
    }

    public func sample(config: RunConfig, checkpoint: CheckpointState, request: SampleRequest) throws -> (images: Tensor, columns: Int?) {
        for (name, set) in [("--sampler", request.sampler != nil), ("--steps", request.steps != nil),
                            ("--eta", request.eta != nil), ("--guidance", request.guidance != nil),
                            ("--init", request.initImages != nil)] where set {
            throw SampleOptionError("\(name) does not apply to a GAN (model.type \(modelType)); GANs sample in one pass")
        }
        // A checkpoint holds /generator_ema (and /generator); `loom export` writes G's EMA as /ema.
        guard let weights = checkpoint.network("generator_ema") ?? checkpoint.network("ema") ?? checkpoint.network("generator") else {
            throw SampleOptionError("the checkpoint holds no /generator_ema, /ema or /generator weights")
        }
        var s = RandomStream(key: 0)
        let g = DCGANGenerator(model, stream: &s)
        try g.loadStateDict(weights)
        if let points = request.interpolate {
            var stream = RandomStream(seed: request.seed, purpose: .sampling)
            let rows = request.count
            let ends = Tensor.normal([2 * rows, model.zDim], stream: &stream)
            let z = Self.slerpRows(ends, rows: rows, points: points)
            let labels = model.classes > 0 ? (0..<(rows * points)).map { request.label ?? (($0 / points) % model.classes) } : nil
            return (GANTask.generate(g, z: z, labels: labels), points)
        }
        let columns = model.classes > 0 && request.label == nil && request.count >= model.classes ? model.classes : nil
        return (GANTask.sample(g, count: request.count, seed: request.seed, label: request.label, first: request.first), columns)
    }

    /// `rows × points` latent vectors: row r walks from `ends[2r]` to `ends[2r+1]` along the
    /// great circle (spherical interpolation, as for Gaussian latents in Radford et al. / White 2016).
    static func slerpRows(_ ends: Tensor, rows: Int, points: Int) -> Tensor {
        let d = ends.shape[1]
        let out = Tensor(uninitialized: [rows * points, d])
        for r in 0..<rows {
            let a = ends.data + 2 * r * d, b = ends.data + (2 * r + 1) * d
            var dot = 0.0, na = 0.0, nb = 0.0
            for i in 0..<d { dot += Double(a[i] * b[i]); na += Double(a[i] * a[i]); nb += Double(b[i] * b[i]) }
            let omega = acos(max(-1, min(1, dot / (na * nb).squareRoot())))
            for j in 0..<points {
                let t = Double(j) / Double(points - 1)
                let (wa, wb) = omega < 1e-6 ? (1 - t, t) : (sin((1 - t) * omega) / sin(omega), sin(t * omega) / sin(omega))
                let o = out.data + (r * points + j) * d
                for i in 0..<d { o[i] = Float(wa * Double(a[i]) + wb * Double(b[i])) }
            }
        }
        return out
    }
}

extension RunConfig {
    /// The GAN family's settings, when this is a GAN config.
    public var ganFamily: GANFamily? { family as? GANFamily }
}
