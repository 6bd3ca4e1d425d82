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
    /// The model family's own settings (`model:` and its sections); `model.type` picks it.
    public var family: any FamilySettings = DiffusionFamily()
    public var data = DataSettings()
    public var optimizer = OptimizerSettings()
    public var schedule = ScheduleSettings()
    public var train = TrainSettings()
    public var ema = EMASettings()
    public var logging = LoggingSettings()
    public var sample = SampleSettings()
    public var checkpoint = CheckpointSettings()
    /// Sample-quality metrics during training (`eval:`).
    public var eval = EvalSettings()
    /// How `loom train` supervises the workers (watchdog, restarts, preemption).
    public var coordinator = CoordinatorSettings()
    /// The resolved config (every key with its effective value) as YAML text.
    public var resolvedYAML = ""

    public struct DataSettings {
        public var path = "data/fashion-mnist"
        public var randomFlip = false
    }

    public struct OptimizerSettings {
        public var type = OptimizerType.adamw
        public var lr = 2e-4
        public var betas = [0.9, 0.999]
        public var eps = 1e-8
        public var weightDecay = 0.0
        public var momentum = 0.9
        /// RMSprop's smoothing constant.
        public var alpha = 0.99
    }

    public struct ScheduleSettings {
        public var type = ScheduleType.constant
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
        /// Batch-norm statistics summed over every replica (synchronised batch norm).
        public var syncBatchNorm = false
    }

    public struct EMASettings {
        public var decay = 0.9999
        public var warmup = EMAWarmup.ramp
        public var startStep = 0
    }

    public struct LoggingSettings {
        public var every = 10
        /// Also write every logged scalar and sample grid as TensorBoard events in `RUN/tensorboard/`.
        public var tensorboard = true
    }

    public struct SampleSettings {
        public var every = 500                  // 0 = never during training
        public var n = 64
        public var sampler = SamplerType.ddim
        public var steps = 50
        public var eta = 0.0
        public var guidance = 1.0
    }

    public struct CheckpointSettings {
        public var every = 500
        public var keepLast = 3
        public var milestoneEvery = 0           // 0 = no milestones
    }

    /// `coordinator:` — what `loom train` does when workers die, hang or are preempted.
    public struct CoordinatorSettings {
        /// Seconds without progress on any rank before the job counts as hung.
        public var hangTimeout = 300.0
        /// Restarts from the newest checkpoint before `loom train` gives up.
        public var maxRestarts = 3
        /// Seconds before the first restart; doubled for each further one.
        public var restartBackoff = 5.0
        /// Seconds the workers get to checkpoint after SIGTERM/SIGUSR1 before they are killed.
        public var gracePeriod = 60.0
        /// What a worker does when a checkpoint fails for lack of disk space.
        public var onDiskFull = DiskFullPolicy.stop
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
        // Step counts and intervals up to 10⁹, so step × batch × ranks stays far from Int.max.
        let steps = Valid.within(0...1_000_000_000), interval = Valid.within(1...1_000_000_000)
        seed = try r.value("seed", default: seed)
        threads = try r.value("threads", default: threads, Valid.within(1...256))
        convAlgorithm = try r.choice("conv_algorithm", default: convAlgorithm)
        data = try r.section("data") { d in
            var s = DataSettings()
            s.path = try d.value("path", default: s.path)
            s.randomFlip = try d.value("random_flip", default: s.randomFlip)
            return s
        }
        optimizer = try r.section("optimizer") { o in
            var s = OptimizerSettings()
            s.type = try o.choice("type", default: s.type)
            s.lr = try o.value("lr", default: s.lr, Valid.positiveFloat)
            s.betas = try o.value("betas", default: s.betas) {
                $0.count == 2 && $0.allSatisfy { $0 >= 0 && $0 < 1 } ? nil : "must be a list of two numbers in [0, 1), found \($0)"
            }
            s.eps = try o.value("eps", default: s.eps, Valid.positiveFloat)
            s.weightDecay = try o.value("weight_decay", default: s.weightDecay, Valid.nonNegativeNumber)
            s.momentum = try o.value("momentum", default: s.momentum, Valid.fraction)
            s.alpha = try o.value("alpha", default: s.alpha, Valid.fraction)
            return s
        }
        schedule = try r.section("schedule") { o in
            var s = ScheduleSettings()
            s.type = try o.choice("type", default: s.type)
            s.warmupSteps = try o.value("warmup_steps", default: s.warmupSteps, steps)
            s.minLR = try o.value("min_lr", default: s.minLR, Valid.nonNegativeNumber)
            return s
        }
        train = try r.section("train") { t in
            var s = TrainSettings()
            s.batchSize = try t.value("batch_size", default: s.batchSize, Valid.within(1...65_536))
            s.maxSteps = try t.value("max_steps", default: s.maxSteps, steps)
            s.gradAccum = try t.value("grad_accum", default: s.gradAccum, Valid.within(1...1024))
            s.clipGradNorm = try t.value("clip_grad_norm", default: s.clipGradNorm, Valid.nonNegativeNumber)
            s.overlapAllReduce = try t.value("overlap_allreduce", default: s.overlapAllReduce)
            s.bucketMB = try t.value("bucket_mb", default: s.bucketMB, Valid.within(1...4096))
            s.checkReplicasEvery = try t.value("check_replicas_every", default: s.checkReplicasEvery, steps)
            s.syncBatchNorm = try t.value("sync_batch_norm", default: s.syncBatchNorm)
            return s
        }
        ema = try r.section("ema") { e in
            var s = EMASettings()
            s.decay = try e.value("decay", default: s.decay, Valid.unit)
            s.warmup = try e.choice("warmup", default: s.warmup)
            s.startStep = try e.value("start_step", default: s.startStep, steps)
            return s
        }
        logging = try r.section("logging") { l in
            var s = LoggingSettings()
            s.every = try l.value("every", default: s.every, interval)
            s.tensorboard = try l.value("tensorboard", default: s.tensorboard)
            return s
        }
        sample = try r.section("sample") { l in
            var s = SampleSettings()
            s.every = try l.value("every", default: s.every, steps)
            s.n = try l.value("n", default: s.n, Valid.within(1...10_000))
            s.sampler = try l.choice("sampler", default: s.sampler)
            s.steps = try l.value("steps", default: s.steps, Valid.within(1...100_000))
            s.eta = try l.value("eta", default: s.eta, Valid.unit)
            s.guidance = try l.value("guidance", default: s.guidance) { $0.isFinite && $0 >= 0 && $0 <= 100 ? nil : "must be between 0 and 100, found \($0)" }
            return s
        }
        checkpoint = try r.section("checkpoint") { c in
            var s = CheckpointSettings()
            s.every = try c.value("every", default: s.every, steps)
            s.keepLast = try c.value("keep_last", default: s.keepLast, Valid.within(1...10_000))
            s.milestoneEvery = try c.value("milestone_every", default: s.milestoneEvery, steps)
            return s
        }
        coordinator = try r.section("coordinator") { c in
            var s = CoordinatorSettings()
            s.hangTimeout = try c.value("hang_timeout", default: s.hangTimeout) {
                (1...604_800).contains($0) ? nil : "must be between 1 and 604800 seconds, found \($0)" }
            s.maxRestarts = try c.value("max_restarts", default: s.maxRestarts) {
                (0...1000).contains($0) ? nil : "must be between 0 and 1000, found \($0)" }
            s.restartBackoff = try c.value("restart_backoff", default: s.restartBackoff) {
                (0...3600).contains($0) ? nil : "must be between 0 and 3600 seconds, found \($0)" }
            s.gracePeriod = try c.value("grace_period", default: s.gracePeriod) {
                (1...3600).contains($0) ? nil : "must be between 1 and 3600 seconds, found \($0)" }
            s.onDiskFull = try c.choice("on_disk_full", default: s.onDiskFull)
            return s
        }
        eval = try r.section("eval") { try EvalSettings.read($0) }
        family = try readFamily(r)
        try eval.check(file: r.file, config: self)
    }
}

/// `optimizer.type`.
public enum OptimizerType: String, CaseIterable, Sendable { case adamw, adam, sgd, rmsprop }
/// `schedule.type`.
public enum ScheduleType: String, CaseIterable, Sendable { case constant, linear_warmup, cosine }
/// `ema.warmup`.
public enum EMAWarmup: String, CaseIterable, Sendable { case ramp, none, steps }
/// `coordinator.on_disk_full`: `stop` ends the run (exit 1), `retry` keeps training and
/// tries again at the next checkpoint interval.
public enum DiskFullPolicy: String, CaseIterable, Sendable { case stop, retry }
/// `sample.sampler`.
public enum SamplerType: String, CaseIterable, Sendable { case ddpm, ddim, dpm_solver }

extension RunConfig {
    /// Reads `model:` with the family its `type` names, then that family's own sections;
    /// a key or section of another family is reported as not applying to this `model.type`.
    func readFamily(_ r: ConfigReader) throws -> any FamilySettings {
        let common = self
        var chosen: (any FamilySettings.Type)!
        let settings: any FamilySettings = try r.section("model") { m in
            let type = try m.value("type", default: DiffusionFamily.modelTypes[0], Valid.oneOf(ModelFamilies.modelTypes))
            chosen = ModelFamilies.family(of: type)!
            // Another model type's key is reported first: it explains a failing check too
            // (DiT keys under model.type unet).
            func foreignKeys() throws {
                let otherTypes = ModelFamilies.modelTypes.filter { $0 != type }, own = ModelFamilies.modelKeys(of: type)
                for key in m.unreadKeys where !own.contains(key) && otherTypes.contains(where: { ModelFamilies.modelKeys(of: $0).contains(key) }) {
                    throw ConfigError.notForFamily(file: r.file, path: "model.\(key)", modelType: type)
                }
            }
            let s: any FamilySettings
            do { s = try chosen.read(type: type, model: m, root: r, config: common) } catch { try foreignKeys(); throw error }
            try foreignKeys()
            return s
        }
        let others = ModelFamilies.all.filter { ObjectIdentifier($0) != ObjectIdentifier(chosen) }
        for key in r.unreadKeys where others.contains(where: { $0.sections.contains(key) }) {
            let inner = r.mapping?[key]?.mapping?.first?.key.scalar?.string
            throw ConfigError.notForFamily(file: r.file, path: inner.map { "\(key).\($0)" } ?? key,
                                           modelType: settings.modelType)
        }
        try settings.checkFits(file: r.file, config: common)
        return settings
    }
}
