import ArgumentParser
import Foundation
import LoomNN
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest numerics CONFIG DIR [--batch N] [key=value …]`: what a second implementation
/// (bench/pytorch/numerics.py, the PyTorch twins) needs to check Loom's numbers, in three files:
///
/// - `DIR/checkpoint.h5`: a Loom checkpoint of the config's task whose every parameter, EMA
///   shadow and batch-norm statistic was moved off its initial value by random noise (so no
///   zero-initialised layer hides a mistake);
/// - `DIR/inputs.h5`: a batch (`x` NHWC in [-1, 1], `labels`) and every random draw the
///   training step makes (diffusion: `t`, `noise`, `step_labels` after label dropout; GANs:
///   `z`; VAEs: `eps`), and for diffusion the sampler inputs (`sample_x`, `sample_noise`,
///   `sample_labels`, attribute `guidance`);
/// - `DIR/loom.h5`: Loom's results: `/forward/*` (network outputs on those inputs before the
///   step), `/metrics/*` (what the training step returned), `/grad/<network>/<name>` (every
///   gradient of that one `trainStep`), `/after/<network>/<name>` (batch-norm statistics after
///   it), and for diffusion `/schedule/*` (float64 tables), `/timesteps/*` and `/sampler/*`
///   (one step of each sampler, from the EMA weights).
struct SelfTestNumerics: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "numerics")

    @Argument(help: "Run config (YAML).")
    var config: String

    @Argument(help: "Output folder (created).")
    var folder: String

    @Option(help: "Images per batch.")
    var batch = 8

    @Argument(help: "Config overrides key.path=value.")
    var overrides: [String] = []

    func validate() throws {
        try OptionError.check("--batch", batch, in: 2...256)
    }

    func run() throws {
        var cfg = try RunConfig.load(file: config, overrides: overrides)
        cfg.train.batchSize = batch
        ConvAlgorithm.current = cfg.convAlgorithm
        let task = try cfg.family.makeTask(config: cfg, rank: 0, communicator: nil)
        var noise = RandomStream(key: 0x6e75_6d65_7269_6373)   // "numerics"
        for (_, tensors) in task.networks { NumericsCheck.perturb(tensors, stream: &noise) }

        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let dir = URL(fileURLWithPath: folder)
        let checkpoint = dir.appendingPathComponent("checkpoint.h5").path
        try? FileManager.default.removeItem(atPath: checkpoint)
        try CheckpointFile.write(CheckpointState(
            networks: task.networks.map { (name: $0.name, tensors: $0.tensors) },
            optimizers: task.optimizers.map { (name: $0.name, tensors: $0.optimizer.stateTensors()) },
            counters: task.counters, rng: Dictionary(uniqueKeysWithValues: task.streams.map { ($0.purpose, [$0.stream]) }),
            configYAML: cfg.resolvedYAML, loomVersion: LoomCommand.version,
            metadata: ["purpose": "loom selftest numerics"]), to: checkpoint)

        let shape = cfg.family.sampleShape, classes = cfg.family.classes
        var data = RandomStream(seed: 99, purpose: .data)
        let images = Tensor.uniform([batch] + shape, low: -1, high: 1, stream: &data)
        let labels = (0..<batch).map { $0 % max(1, classes) }
        let inputs = try H5File.create(dir.appendingPathComponent("inputs.h5").path, overwrite: true)
        let results = try H5File.create(dir.appendingPathComponent("loom.h5").path, overwrite: true)
        defer { inputs.close(); results.close() }
        try inputs.root.write("x", values: images.array, shape: images.shape)
        try inputs.root.write("labels", values: labels.map(Int64.init), shape: [batch])

        let out = NumericsOutput(inputs: inputs.root, results: results.root)
        // The family's part writes the step's random draws (predicted from copies of the task's
        // streams), the forward outputs and, for diffusion, the schedule and sampler steps.
        let predicted: [RandomStream]
        switch task {
        case let t as DiffusionTask: predicted = try NumericsCheck.diffusion(t, images: images, labels: labels, out: out)
        case let t as GANTask: predicted = try NumericsCheck.gan(t, images: images, labels: labels, out: out)
        case let t as VAETask: predicted = try NumericsCheck.vae(t, images: images, out: out)
        default: throw ValidationError("\(config): selftest numerics knows no task of type \(type(of: task))")
        }
        let grads = NumericsCheck.GradientCapture(task)
        let metrics = try task.trainStep {
            Batch(images: images, labels: labels, indices: Array(0..<batch), cursor: DataCursor(), next: DataCursor())
        }
        grads.stop()
        let used = task.streams.map(\.stream)
        guard used == predicted else {
            throw ValidationError("selftest numerics: the training step drew \(used) from its streams, not the predicted \(predicted): update NumericsCheck to the step's draws")
        }
        try out.metrics(metrics)
        try out.gradients(grads.gradients)
        try out.statistics(task.networks)
        print("selftest numerics: \(cfg.family.summary), batch \(batch): wrote \(dir.path)/{checkpoint,inputs,loom}.h5")
    }
}
