import ArgumentParser
import Foundation
import LoomDiffusion
import LoomModels
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom sample CKPT OUT.png`: a grid of samples from a checkpoint's EMA weights.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample images from a checkpoint's EMA weights into a PNG grid (and optionally HDF5).")

    @Argument(help: "Checkpoint file, a `latest` pointer, or an export from `loom export`.")
    var checkpoint: String

    @Argument(help: "Output PNG grid.")
    var output: String

    @Option(help: "ddpm, ddim or dpm_solver (default: the config's).")
    var sampler: String?

    @Option(help: "Sampling steps (default: the config's).")
    var steps: Int?

    @Option(help: "DDIM η (0: deterministic).")
    var eta: Double = 0

    @Option(help: "Number of images.")
    var n = 64

    @Option(help: "Classifier-free guidance scale for conditional models (1: none).")
    var guidance: Double?

    @Option(name: .customLong("class"), help: "Class of every image (default: 0, 1, 2, … in turn).")
    var classLabel: Int?

    @Option(help: "Seed of the initial noise.")
    var seed: UInt64 = 0

    @Option(help: "Also write the raw samples ([N, H, W, C] float32 in [-1, 1], dataset `samples`) to this HDF5 file.")
    var raw: String?

    @Option(help: "Threads.")
    var threads = 1

    func run() throws {
        do {
            Parallel.setThreads(threads)
            let state = try CheckpointStore.read(checkpoint)
            var cfg = try RunConfig.parse(yaml: state.configYAML, name: "\(checkpoint) (/meta/config)")
            if let sampler {
                guard ["ddpm", "ddim", "dpm_solver"].contains(sampler) else {
                    throw ValidationError("--sampler must be ddpm, ddim or dpm_solver, found '\(sampler)'")
                }
                cfg.sample.sampler = sampler
            }
            if let steps { cfg.sample.steps = steps }
            cfg.sample.eta = eta
            if let c = classLabel, cfg.model.classes == 0 || !(0..<cfg.model.classes).contains(c) {
                throw ValidationError(cfg.model.classes == 0 ? "--class: this model is unconditional"
                                                             : "--class must be in 0..<\(cfg.model.classes), found \(c)")
            }
            guard let weights = state.network("ema") ?? state.network("model") else {
                throw ValidationError("\(checkpoint) holds no /ema or /model weights")
            }
            var s = RandomStream(key: 0)
            ConvAlgorithm.current = cfg.convAlgorithm
            let net = UNet(cfg.model, stream: &s)
            try net.loadStateDict(weights)
            let images = Sampling.sample(config: cfg, model: net, count: n, seed: seed, label: classLabel, guidance: guidance)
            try PNG.writeGrid(path: output, images: images)
            if let raw {
                let file = try H5File.create(raw, overwrite: true)
                try file.root.write("samples", values: images.array, shape: images.shape)
                file.close()
            }
            print("wrote \(output)" + (raw.map { " and \($0)" } ?? ""))
        } catch let e as ValidationError {
            throw e
        } catch {
            FileHandle.standardError.write(Data("loom sample: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
