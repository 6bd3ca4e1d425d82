import Foundation
import LoomModels
import LoomTensor
import Yams

/// Everything a run needs, read from a YAML file plus `key.path=value` overrides.
/// Defaults are workload W1 (`ddpm-unet-s`).
public struct RunConfig {
    public var seed = 0
    /// Threads per rank for BLAS, oneDNN and Loom's own loops.
    public var threads = 1
    /// Convolution algorithm: `auto` (Winograd for 3×3 stride-1 layers where oneDNN has it) or `direct`.
    public var convAlgorithm = ConvAlgorithm.auto
    public var model = UNetConfig()
    public var diffusion = DiffusionSettings()
    public var data = DataSettings()
    public var optimizer = OptimizerSettings()
    public var schedule = ScheduleSettings()
    public var train = TrainSettings()
    public var ema = EMASettings()
    public var logging = LoggingSettings()
    public var sample = SampleSettings()
    public var checkpoint = CheckpointSettings()
    /// The resolved config (every key with its effective value) as YAML text.
    public var resolvedYAML = ""

    public struct DiffusionSettings {
        public var timesteps = 1000
        public var schedule = "linear"          // linear | cosine
        public var betaStart = 1e-4
        public var betaEnd = 0.02
        public var prediction = "epsilon"       // epsilon | v | x0
        public var lossWeighting = "uniform"    // uniform | min_snr
        public var minSNRGamma = 5.0
        public var offsetNoise = 0.0
        public var labelDropout = 0.1
    }

    public struct DataSettings {
        public var path = "data/fashion-mnist"
        public var randomFlip = false
    }

    public struct OptimizerSettings {
        public var type = "adamw"               // adamw | adam | sgd
        public var lr = 2e-4
        public var betas = [0.9, 0.999]
        public var eps = 1e-8
        public var weightDecay = 0.0
        public var momentum = 0.9
    }

    public struct ScheduleSettings {
        public var type = "constant"            // constant | linear_warmup | cosine
        public var warmupSteps = 0
        public var minLR = 0.0
    }

    public struct TrainSettings {
        public var batchSize = 64               // per rank
        public var maxSteps = 1000
        public var gradAccum = 1
        public var clipGradNorm = 0.0           // 0 = off
        public var overlapAllReduce = false
        public var bucketMB = 25
        /// Compare the replicas' parameter checksums every this many steps (0: only at start
        /// and at checkpoints).
        public var checkReplicasEvery = 0
    }

    public struct EMASettings {
        public var decay = 0.9999
        public var warmup = "ramp"              // ramp | none | steps
        public var startStep = 0
    }

    public struct LoggingSettings {
        public var every = 10
    }

    public struct SampleSettings {
        public var every = 500                  // 0 = never during training
        public var n = 64
        public var sampler = "ddim"             // ddpm | ddim | dpm_solver
        public var steps = 50
        public var eta = 0.0
        public var guidance = 1.0
    }

    public struct CheckpointSettings {
        public var every = 500
        public var keepLast = 3
        public var milestoneEvery = 0           // 0 = no milestones
    }

    public init() {}

    /// Reads `file` (nil: defaults only) and applies `overrides` (`key.path=value`).
    public static func load(file: String?, overrides: [String] = []) throws -> RunConfig {
        guard let file else { return try parse(yaml: nil, name: "(defaults)", overrides: overrides) }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigError.unreadable(file: file, reason: FileManager.default.fileExists(atPath: file) ? "not UTF-8 text" : "no such file")
        }
        return try parse(yaml: text, name: file, overrides: overrides)
    }

    /// Reads config text (e.g. the resolved YAML stored in a checkpoint); `name` is what
    /// error messages call it.
    public static func parse(yaml text: String?, name: String, overrides: [String] = []) throws -> RunConfig {
        var root: Yams.Node?
        if let text {
            do { root = try Yams.compose(yaml: text) } catch {
                throw ConfigError.unreadable(file: name, reason: "\(error)".split(separator: "\n").first.map(String.init) ?? "invalid YAML")
            }
        }
        for o in overrides { root = try applyOverride(o, to: root) }
        let reader = try ConfigReader(root, file: name)
        var c = try RunConfig(reader)
        try reader.finish()
        c.resolvedYAML = (try? Yams.serialize(node: reader.resolvedNode)) ?? ""
        return c
    }

    init(_ r: ConfigReader) throws {
        let positive: (Int) -> String? = { $0 > 0 ? nil : "must be positive, found \($0)" }
        let nonNegative: (Int) -> String? = { $0 >= 0 ? nil : "must be 0 or more, found \($0)" }
        let oneOf = { (options: [String]) in { (v: String) -> String? in
            options.contains(v) ? nil : "must be one of \(options.joined(separator: ", ")), found '\(v)'" + (nearest(v, in: options).map { "; did you mean '\($0)'?" } ?? "")
        } }
        seed = try r.value("seed", default: seed)
        threads = try r.value("threads", default: threads, positive)
        let algorithms = ConvAlgorithm.allCases.map(\.rawValue)
        convAlgorithm = ConvAlgorithm(rawValue: try r.value("conv_algorithm", default: convAlgorithm.rawValue,
                                                            oneOf(algorithms)))!
        model = try r.section("model") { try UNetConfig.read($0) }
        diffusion = try r.section("diffusion") { d in
            var s = DiffusionSettings()
            s.timesteps = try d.value("timesteps", default: s.timesteps, positive)
            s.schedule = try d.value("schedule", default: s.schedule, oneOf(["linear", "cosine"]))
            s.betaStart = try d.value("beta_start", default: s.betaStart)
            s.betaEnd = try d.value("beta_end", default: s.betaEnd)
            s.prediction = try d.value("prediction", default: s.prediction, oneOf(["epsilon", "v", "x0"]))
            s.lossWeighting = try d.value("loss_weighting", default: s.lossWeighting, oneOf(["uniform", "min_snr"]))
            s.minSNRGamma = try d.value("min_snr_gamma", default: s.minSNRGamma)
            s.offsetNoise = try d.value("offset_noise", default: s.offsetNoise)
            s.labelDropout = try d.value("label_dropout", default: s.labelDropout) { (0...1).contains($0) ? nil : "must be in [0, 1]" }
            return s
        }
        data = try r.section("data") { d in
            var s = DataSettings()
            s.path = try d.value("path", default: s.path)
            s.randomFlip = try d.value("random_flip", default: s.randomFlip)
            return s
        }
        optimizer = try r.section("optimizer") { o in
            var s = OptimizerSettings()
            s.type = try o.value("type", default: s.type, oneOf(["adamw", "adam", "sgd"]))
            s.lr = try o.value("lr", default: s.lr) { $0 > 0 ? nil : "must be positive" }
            s.betas = try o.value("betas", default: s.betas) { $0.count == 2 ? nil : "must be a list of two numbers" }
            s.eps = try o.value("eps", default: s.eps)
            s.weightDecay = try o.value("weight_decay", default: s.weightDecay)
            s.momentum = try o.value("momentum", default: s.momentum)
            return s
        }
        schedule = try r.section("schedule") { o in
            var s = ScheduleSettings()
            s.type = try o.value("type", default: s.type, oneOf(["constant", "linear_warmup", "cosine"]))
            s.warmupSteps = try o.value("warmup_steps", default: s.warmupSteps, nonNegative)
            s.minLR = try o.value("min_lr", default: s.minLR)
            return s
        }
        train = try r.section("train") { t in
            var s = TrainSettings()
            s.batchSize = try t.value("batch_size", default: s.batchSize, positive)
            s.maxSteps = try t.value("max_steps", default: s.maxSteps, nonNegative)
            s.gradAccum = try t.value("grad_accum", default: s.gradAccum, positive)
            s.clipGradNorm = try t.value("clip_grad_norm", default: s.clipGradNorm)
            s.overlapAllReduce = try t.value("overlap_allreduce", default: s.overlapAllReduce)
            s.bucketMB = try t.value("bucket_mb", default: s.bucketMB, positive)
            s.checkReplicasEvery = try t.value("check_replicas_every", default: s.checkReplicasEvery, nonNegative)
            return s
        }
        ema = try r.section("ema") { e in
            var s = EMASettings()
            s.decay = try e.value("decay", default: s.decay) { (0...1).contains($0) ? nil : "must be in [0, 1]" }
            s.warmup = try e.value("warmup", default: s.warmup, oneOf(["ramp", "none", "steps"]))
            s.startStep = try e.value("start_step", default: s.startStep, nonNegative)
            return s
        }
        logging = try r.section("logging") { l in
            var s = LoggingSettings()
            s.every = try l.value("every", default: s.every, positive)
            return s
        }
        sample = try r.section("sample") { l in
            var s = SampleSettings()
            s.every = try l.value("every", default: s.every, nonNegative)
            s.n = try l.value("n", default: s.n, positive)
            s.sampler = try l.value("sampler", default: s.sampler, oneOf(["ddpm", "ddim", "dpm_solver"]))
            s.steps = try l.value("steps", default: s.steps, positive)
            s.eta = try l.value("eta", default: s.eta)
            s.guidance = try l.value("guidance", default: s.guidance)
            return s
        }
        checkpoint = try r.section("checkpoint") { c in
            var s = CheckpointSettings()
            s.every = try c.value("every", default: s.every, nonNegative)
            s.keepLast = try c.value("keep_last", default: s.keepLast, positive)
            s.milestoneEvery = try c.value("milestone_every", default: s.milestoneEvery, nonNegative)
            return s
        }
    }
}

extension UNetConfig {
    /// Reads a `model:` section (type unet).
    static func read(_ m: ConfigReader) throws -> UNetConfig {
        var c = UNetConfig()
        _ = try m.value("type", default: "unet") { $0 == "unet" ? nil : "must be 'unet' (the only family so far), found '\($0)'" }
        c.groups = try m.value("groups", default: c.groups) { $0 > 0 ? nil : "must be positive" }
        c.imageSize = try m.value("image_size", default: c.imageSize) { $0 > 0 ? nil : "must be positive" }
        c.inChannels = try m.value("in_channels", default: c.inChannels) { $0 > 0 ? nil : "must be positive" }
        c.baseChannels = try m.value("base_channels", default: c.baseChannels) { $0 > 0 && $0 % c.groups == 0 ? nil : "must be a positive multiple of model.groups (\(c.groups))" }
        c.channelMultipliers = try m.value("channel_mult", default: c.channelMultipliers) { $0.isEmpty || $0.contains { $0 <= 0 } ? "must be a non-empty list of positive integers" : nil }
        c.resBlocks = try m.value("num_res_blocks", default: c.resBlocks) { $0 > 0 ? nil : "must be positive" }
        c.attentionResolutions = try m.value("attention_resolutions", default: c.attentionResolutions)
        c.heads = try m.value("num_heads", default: c.heads) { $0 > 0 ? nil : "must be positive" }
        c.dropout = try m.value("dropout", default: c.dropout) { (0..<1).contains($0) ? nil : "must be in [0, 1)" }
        c.classes = try m.value("num_classes", default: c.classes) { $0 >= 0 ? nil : "must be 0 (unconditional) or more" }
        return c
    }
}
