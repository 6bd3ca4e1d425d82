import Foundation
import LoomDistributed
import LoomMetrics
import LoomStorage
import LoomTensor

extension RunConfig {
    /// `eval:` — sample-quality metrics during training (off unless `every` > 0).
    public struct EvalSettings: Equatable {
        /// Evaluate every this many steps (and at the last step); 0: never. A multiple of
        /// `logging.every`, so the metrics join that step's line of `metrics.jsonl`.
        public var every = 0
        /// Images sampled (over all ranks) per evaluation.
        public var n = 1000
        /// The feature network: a classifier checkpoint (`model.type: classifier`).
        public var features = ""
        /// The reference dataset folder ("": `data.path`), its split and how many of its images.
        public var reference = ""
        public var referenceSplit = "train"
        public var referenceN = 10_000
        /// Images sampled together (one chunk; the ranks take chunks in turn).
        public var batch = 64

        public init() {}

        /// Reads `eval:`.
        static func read(_ e: ConfigReader) throws -> EvalSettings {
            var s = EvalSettings()
            s.every = try e.value("every", default: s.every, Valid.within(0...1_000_000_000))
            s.n = try e.value("n", default: s.n, Valid.within(20...100_000))
            s.features = try e.value("features", default: s.features)
            s.reference = try e.value("reference", default: s.reference)
            s.referenceSplit = try e.value("reference_split", default: s.referenceSplit) { $0.isEmpty ? "must name a split (train, test …)" : nil }
            s.referenceN = try e.value("reference_n", default: s.referenceN, Valid.within(20...1_000_000))
            s.batch = try e.value("batch", default: s.batch, Valid.within(1...10_000))
            return s
        }

        /// The constraints between `eval:` and the rest of the config.
        func check(file: String, config: RunConfig) throws {
            guard every > 0 else { return }
            func fail(_ path: String, _ reason: String) -> ConfigError { .invalidValue(file: file, path: path, reason: reason) }
            if features.isEmpty { throw fail("eval.features", "must name a classifier checkpoint when eval.every is set (train one with configs/classifier-fashion.yaml)") }
            if every % config.logging.every != 0 {
                throw fail("eval.every", "must be a multiple of logging.every (\(config.logging.every)), found \(every): the metrics join that step's log line")
            }
            if config.family is ClassifierFamily { throw ConfigError.notForFamily(file: file, path: "eval.every", modelType: config.family.modelType) }
        }
    }
}

/// Sample quality during training: every `eval.every` steps all ranks sample `eval.n` images
/// from the task's averaged weights (split over the ranks, per-index noise from the run seed,
/// the same images at every evaluation), compute their features with the feature network,
/// and rank 0 computes FD, KID, precision, recall (and the accuracy on the conditioned labels)
/// against the reference. The loop only asks whether it is due and logs what it returns.
public final class TrainingEvaluator {
    let config: RunConfig
    let settings: RunConfig.EvalSettings
    let comm: Communicator?
    let network: FeatureNetwork
    /// Rank 0's reference (the other ranks only sample).
    let reference: ReferenceSet?

    /// Checks what `eval:` names before a run starts: the features checkpoint is a classifier
    /// of the model's image shape and the reference split exists (one-line errors).
    public static func check(_ config: RunConfig) throws {
        let e = config.eval
        guard e.every > 0 else { return }
        let network = try FeatureNetwork(checkpoint: e.features)
        guard network.imageShape == config.family.sampleShape else {
            throw EvaluationError.shape(what: "model images", found: config.family.sampleShape, expected: network.imageShape, features: e.features)
        }
        let folder = e.reference.isEmpty ? config.data.path : e.reference
        let index = try DatasetIndex.load(folder: folder)
        guard index.splits[e.referenceSplit] != nil else {
            throw ConfigError.invalidValue(file: "config", path: "eval.reference_split",
                                           reason: "is '\(e.referenceSplit)' but \(folder) has the splits \(index.splits.keys.sorted().joined(separator: ", "))")
        }
    }

    /// Loads the feature network (every rank) and the reference (rank 0; computed once and cached).
    public init(config: RunConfig, communicator: Communicator?, log: (String) -> Void) throws {
        self.config = config
        settings = config.eval
        comm = communicator
        network = try FeatureNetwork(checkpoint: settings.features)
        if (communicator?.rank ?? 0) == 0 {
            let folder = settings.reference.isEmpty ? config.data.path : settings.reference
            reference = try ReferenceSet.load(dataset: folder, split: settings.referenceSplit, count: settings.referenceN,
                                              network: network, note: log)
        } else {
            reference = nil
        }
        try communicator?.barrier()
    }

    /// Whether step `step` evaluates (every `eval.every` steps and the last one).
    public func isDue(step: Int) -> Bool {
        settings.every > 0 && (step % settings.every == 0 || step == config.train.maxSteps)
    }

    /// Samples and scores on every rank; rank 0 gets the metrics, the others nil.
    public func evaluate(task: TrainingTask) throws -> SampleQuality? {
        let state = CheckpointState(networks: task.networks, configYAML: config.resolvedYAML)
        let family = config.family, width = network.featureWidth + network.classes
        var request = SampleRequest()
        request.seed = UInt64(bitPattern: Int64(config.seed))
        let rows = try DistributedSampling.run(total: settings.n, batch: settings.batch, rowShape: [width], communicator: comm) { chunk in
            var part = request
            part.first = chunk.lowerBound
            part.count = chunk.count
            return try network.outputs(family.sample(config: config, checkpoint: state, request: part).images)
        }
        guard let rows, let reference else { return nil }
        let (features, logits) = network.split(rows)
        return try SampleQuality.evaluate(features: features, logits: logits,
                                          labels: IndexedNoise.labels(indices: 0..<settings.n, classes: family.classes, label: nil),
                                          reference: reference)
    }
}
