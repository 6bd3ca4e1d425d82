import Foundation
import LoomDiffusion
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// The training loop of `loom worker`, on every rank: data → step → log → sample →
/// checkpoint, until `train.max_steps`. Rank 0 writes everything to the run directory.
public final class Trainer {
    public let config: RunConfig
    public let run: RunDirectory
    let comm: Communicator
    let task: TrainingTask
    let dataset: ShardedDataset
    var loader: DataLoader
    let checkpoints: CheckpointKeeper
    var metrics: MetricsLog?
    /// Rank 0's TensorBoard events (`logging.tensorboard`).
    var tensorboard: TensorBoardWriter?
    /// Sample-quality metrics every `eval.every` steps (nil: off).
    let evaluator: TrainingEvaluator?
    let log: (String) -> Void
    let control: RunControl

    /// Prepares a run: opens and checks the dataset, builds the task, resumes from the
    /// newest good checkpoint (`resume`) or broadcasts rank 0's initial state.
    public init(config: RunConfig, runDirectory: String, resume: Bool, communicator: Communicator,
                log: @escaping (String) -> Void = { print($0); fflush(stdout) }) throws {
        self.config = config
        self.run = RunDirectory(runDirectory)
        self.comm = communicator
        self.log = comm.rank == 0 ? log : { _ in }
        self.control = RunControl(run: run, rank: communicator.rank)
        Parallel.setThreads(config.threads)
        ConvAlgorithm.current = config.convAlgorithm
        dataset = try Trainer.openDataset(config)
        task = try config.family.makeTask(config: config, rank: comm.rank, communicator: comm)
        checkpoints = try CheckpointKeeper(run: run, config: config, communicator: comm)
        if comm.rank == 0 {
            checkpoints.datasetChecksums = ["train": try DatasetChecksum.of(folder: config.data.path)]
            try run.create()
            try config.resolvedYAML.write(to: run.config, atomically: true, encoding: .utf8)
            metrics = try MetricsLog(run.metrics)
            if config.logging.tensorboard { tensorboard = try TensorBoardWriter(folder: run.tensorboard.path) }
        }
        try comm.barrier()
        evaluator = config.eval.every > 0 ? try TrainingEvaluator(config: config, communicator: comm, log: self.log) : nil

        var cursor = DataCursor()
        if resume, let restored = try checkpoints.restoreNewest(into: task, log: self.log) {
            cursor = restored
        } else {
            // Every replica starts from rank 0's networks (parameters, buffers, EMA shadows).
            try task.broadcastNetworks(over: comm)
        }
        try Replicas.verify(task.replicatedParameters, over: comm)
        loader = try DataLoader(dataset: dataset, options: LoaderOptions(
            batchSize: config.train.batchSize, rank: comm.rank, worldSize: comm.size,
            seed: UInt64(bitPattern: Int64(config.seed)), flip: config.data.randomFlip), cursor: cursor)
        control.beat(step: task.step)
    }

    /// Opens the training split and checks it against the model (kind, sample shape, labels,
    /// a latent set's autoencoder): the same errors `loom worker` and `loom train` report before training.
    public static func openDataset(_ config: RunConfig) throws -> ShardedDataset {
        let dataset = try config.family.openTrainingData(config: config)
        try TrainingEvaluator.check(config)
        return dataset
    }

    /// How `train()` ended.
    public enum Outcome: Equatable {
        /// `train.max_steps` reached.
        case finished
        /// Stopped on request after a checkpoint of this step (exit `RunExit.requeue`).
        case stopped(step: Int)
    }

    /// Trains until `train.max_steps`, then writes a final checkpoint and sample grid; or,
    /// when a stop is requested, checkpoints at the step boundary every rank agreed on.
    @discardableResult
    public func train() throws -> Outcome {
        let c = config.train
        let images = c.batchSize * task.batchesPerStep * comm.size
        log("loom: \(task.summary), \(comm.size) rank(s) × \(config.threads) thread(s), "
            + "global batch \(images), step \(task.step) → \(c.maxSteps), run \(run.root.path)")
        var throughput = Throughput()
        let start = DispatchTime.now().uptimeNanoseconds
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        throughput.record(step: task.step, time: now())
        var window = MetricWindow()
        while task.step < c.maxSteps {
            var cursor = DataCursor()
            let stepMetrics = try task.trainStep { let b = try loader.next(); cursor = b.next; return b }
            if let bad = stepMetrics.first(where: { !$0.1.isFinite }) {
                throw TrainingError.nonFinite(metric: bad.0, step: task.step, rank: comm.rank)
            }
            window.add(stepMetrics)
            throughput.record(step: task.step, time: now())

            if task.step % config.logging.every == 0 || task.step == c.maxSteps {
                let means = try window.meanOverRanks(comm)
                let perStep = throughput.secondsPerStep ?? 0
                let rate = perStep > 0 ? Double(images) / perStep : 0
                let eta = Throughput.format(seconds: perStep * Double(c.maxSteps - task.step))
                let lrs = task.learningRates
                let values = means.map { String(format: "%@ %.4f", $0.0, $0.1) }.joined(separator: "  ")
                log(String(format: "step %d/%d  %@  %.1f img/s  %@  ETA %@", task.step, c.maxSteps, values, rate,
                           lrs.map { String(format: "%@ %.2e", $0.0, $0.1) }.joined(separator: "  "), eta))
                var fields: [String: Any] = ["step": task.step, "images_per_s": rate, "epoch": cursor.epoch, "time": now()]
                var quality: [(String, Double)] = []
                if let e = evaluator, e.isDue(step: task.step) {
                    let started = now()
                    if let q = try e.evaluate(task: task) {
                        quality = q.named
                        log(String(format: "eval step %d: %@  (%d samples, %.0f s)", task.step, q.line, q.count, now() - started))
                    }
                }
                for (k, v) in means + lrs + quality { fields[k] = v }
                try metrics?.append(fields)
                try tensorboard?.scalars(fields.compactMap { k, v in k == "step" ? nil : (v as? Double ?? (v as? Int).map(Double.init)).map { (k, $0) } }
                    .sorted { $0.0 < $1.0 }, step: task.step)
            }
            if c.checkReplicasEvery > 0 && task.step % c.checkReplicasEvery == 0 {
                try Replicas.verify(task.replicatedParameters, over: comm)
            }
            let last = task.step == c.maxSteps
            if config.sample.every > 0 && (task.step % config.sample.every == 0 || last) {
                if comm.rank == 0 { try writeSamples() }
            }
            var saved = false
            if (config.checkpoint.every > 0 && task.step % config.checkpoint.every == 0) || last {
                try save(cursor: cursor)
                saved = true
            }
            control.hangIfAsked(step: task.step)
            control.beat(step: task.step)
            if !last, try control.stopRequested(comm) {
                if !saved { try save(cursor: cursor) }
                try checkpoints.finish()
                try comm.barrier()  // rank 0's file is complete before any rank exits
                loader.close()
                log("stopped on request at step \(task.step) (checkpoint written); exit \(RunExit.requeue) to requeue")
                return .stopped(step: task.step)
            }
        }
        loader.close()
        try checkpoints.finish()
        return .finished
    }

    /// A checkpoint; with `coordinator.on_disk_full: retry` a full disk only skips this one.
    func save(cursor: DataCursor) throws {
        do {
            try checkpoints.save(task: task, cursor: cursor, log: log)
        } catch let error as StorageError where error.isDiskFull && config.coordinator.onDiskFull == .retry
                    && task.step < config.train.maxSteps {
            log("checkpoint at step \(task.step) not written: \(error); retrying at the next interval (coordinator.on_disk_full: retry)")
        }
    }

    /// Writes `sample.n` preview images from the averaged weights (fixed noise) as a grid
    /// `RUN/samples/step-XXXXXXXX.png`.
    func writeSamples() throws {
        let url = run.samples.appendingPathComponent(String(format: "step-%08d.png", task.step))
        let grid = try PNG.grid(images: task.preview(count: config.sample.n), columns: previewColumns)
        try PNG.write(path: url.path, image: grid)
        try tensorboard?.image("samples", grid, step: task.step)
        log("samples: \(url.path)")
    }

    /// Conditional models show one class per column.
    var previewColumns: Int? {
        let k = config.family.classes
        return k > 0 && config.sample.n >= k ? k : nil
    }
}

/// Running sums of the named metrics between two log lines.
struct MetricWindow {
    private var names: [String] = []
    private var sums: [Double] = []
    private var steps = 0

    mutating func add(_ metrics: [(String, Double)]) {
        if names.isEmpty { names = metrics.map(\.0); sums = Array(repeating: 0, count: names.count) }
        for (i, (_, v)) in metrics.enumerated() where i < sums.count { sums[i] += v }
        steps += 1
    }

    /// Each metric's mean over the window and over the ranks; resets the window.
    mutating func meanOverRanks(_ comm: Communicator) throws -> [(String, Double)] {
        var values = sums.map { $0 / Double(max(steps, 1)) }
        try comm.allReduceSum(&values)
        defer { sums = Array(repeating: 0, count: names.count); steps = 0 }
        return zip(names, values.map { $0 / Double(comm.size) }).map { ($0, $1) }
    }
}

/// Failures of the training loop itself.
public enum TrainingError: Error, CustomStringConvertible {
    case nonFinite(metric: String, step: Int, rank: Int)

    public var description: String {
        switch self {
        case let .nonFinite(metric, step, rank):
            return "the \(metric) became NaN or infinite at step \(step) on rank \(rank); lower optimizer.lr or set train.clip_grad_norm"
        }
    }
}
