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
    let task: DiffusionTask
    let dataset: ShardedDataset
    var loader: DataLoader
    let checkpoints: CheckpointKeeper
    var metrics: MetricsLog?
    let log: (String) -> Void

    /// Prepares a run: opens and checks the dataset, builds the task, resumes from the
    /// newest good checkpoint (`resume`) or broadcasts rank 0's initial state.
    public init(config: RunConfig, runDirectory: String, resume: Bool, communicator: Communicator,
                log: @escaping (String) -> Void = { print($0); fflush(stdout) }) throws {
        self.config = config
        self.run = RunDirectory(runDirectory)
        self.comm = communicator
        self.log = comm.rank == 0 ? log : { _ in }
        Parallel.setThreads(config.threads)
        ConvAlgorithm.current = config.convAlgorithm
        let m = config.model
        dataset = try ShardedDataset(folder: config.data.path, split: "train",
                                     expectedShape: [m.imageSize, m.imageSize, m.inChannels], expectedKind: .images)
        if m.classes > 0, let labels = dataset.labels, let top = labels.max(), top >= m.classes {
            throw ConfigError.invalidValue(file: "config", path: "model.num_classes",
                                           reason: "is \(m.classes) but the dataset \(config.data.path) has label \(top)")
        }
        if m.classes > 0 && dataset.labels == nil {
            throw ConfigError.invalidValue(file: "config", path: "model.num_classes",
                                           reason: "is \(m.classes) but the dataset \(config.data.path) has no labels")
        }
        task = DiffusionTask(config: config, rank: comm.rank, communicator: comm)
        checkpoints = try CheckpointKeeper(run: run, config: config, communicator: comm)
        if comm.rank == 0 {
            checkpoints.datasetChecksums = ["train": try DatasetChecksum.of(folder: config.data.path)]
            try run.create()
            try config.resolvedYAML.write(to: run.config, atomically: true, encoding: .utf8)
            metrics = try MetricsLog(run.metrics)
        }
        try comm.barrier()

        var cursor = DataCursor()
        if resume, let restored = try checkpoints.restoreNewest(into: task, log: self.log) {
            cursor = restored
        } else {
            // Every replica starts from rank 0's parameters (and buffers).
            try Replicas.broadcast(task.model.parameters() + task.model.namedBuffers().map(\.1), over: comm)
            try Replicas.broadcast(task.ema.stateTensors().map(\.1), over: comm)
        }
        try Replicas.verify(task.model.namedParameters(), over: comm)
        loader = try DataLoader(dataset: dataset, options: LoaderOptions(
            batchSize: config.train.batchSize, rank: comm.rank, worldSize: comm.size,
            seed: UInt64(bitPattern: Int64(config.seed)), flip: config.data.randomFlip), cursor: cursor)
    }

    /// Trains until `train.max_steps`, then writes a final checkpoint and sample grid.
    public func train() throws {
        let c = config.train
        let images = c.batchSize * c.gradAccum * comm.size
        log("loom: \(task.model.parameterCount) parameters, \(comm.size) rank(s) × \(config.threads) thread(s), "
            + "global batch \(images), step \(task.step) → \(c.maxSteps), run \(run.root.path)")
        var throughput = Throughput()
        let start = DispatchTime.now().uptimeNanoseconds
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        throughput.record(step: task.step, time: now())
        var lossSum = 0.0, lossCount = 0
        while task.step < c.maxSteps {
            var micro: [Batch] = []
            for _ in 0..<c.gradAccum { micro.append(try loader.next()) }
            let (loss, norm) = try task.trainStep(micro)
            guard loss.isFinite else { throw TrainingError.nonFiniteLoss(step: task.step, rank: comm.rank) }
            lossSum += loss
            lossCount += 1
            let cursor = micro.last!.next
            throughput.record(step: task.step, time: now())

            if task.step % config.logging.every == 0 || task.step == c.maxSteps {
                var values = [lossSum / Double(lossCount)]
                try comm.allReduceSum(&values)
                let meanLoss = values[0] / Double(comm.size)
                lossSum = 0
                lossCount = 0
                let perStep = throughput.secondsPerStep ?? 0
                let rate = perStep > 0 ? Double(images) / perStep : 0
                let eta = Throughput.format(seconds: perStep * Double(c.maxSteps - task.step))
                log(String(format: "step %d/%d  loss %.4f  %.1f img/s  lr %.2e  ETA %@", task.step, c.maxSteps,
                           meanLoss, rate, task.schedule.lr(atStep: task.step - 1), eta))
                var fields: [String: Any] = ["step": task.step, "loss": meanLoss, "images_per_s": rate,
                                             "lr": task.schedule.lr(atStep: task.step - 1), "epoch": cursor.epoch, "time": now()]
                if let norm { fields["grad_norm"] = norm }
                try metrics?.append(fields)
            }
            if c.checkReplicasEvery > 0 && task.step % c.checkReplicasEvery == 0 {
                try Replicas.verify(task.model.namedParameters(), over: comm)
            }
            let last = task.step == c.maxSteps
            if config.sample.every > 0 && (task.step % config.sample.every == 0 || last) {
                if comm.rank == 0 { try writeSamples() }
            }
            if (config.checkpoint.every > 0 && task.step % config.checkpoint.every == 0) || last {
                try checkpoints.save(task: task, cursor: cursor, log: log)
            }
        }
        loader.close()
        try checkpoints.finish()
    }

    /// Samples `sample.n` images from the EMA weights with fixed noise and writes a grid
    /// `RUN/samples/step-XXXXXXXX.png`.
    func writeSamples() throws {
        let url = run.samples.appendingPathComponent(String(format: "step-%08d.png", task.step))
        let grid = try Sampling.sample(config: config, ema: task.ema, count: config.sample.n)
        try PNG.writeGrid(path: url.path, images: grid)
        log("samples: \(url.path)")
    }
}

/// Failures of the training loop itself.
public enum TrainingError: Error, CustomStringConvertible {
    case nonFiniteLoss(step: Int, rank: Int)

    public var description: String {
        switch self {
        case let .nonFiniteLoss(step, rank):
            return "the loss became NaN or infinite at step \(step) on rank \(rank); lower optimizer.lr or set train.clip_grad_norm"
        }
    }
}
