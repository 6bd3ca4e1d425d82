import ArgumentParser
import Foundation
import LoomDiffusion
import LoomModels
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom sample CKPT OUT.png`: a grid of samples from a checkpoint's averaged weights.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample images from a checkpoint's EMA weights into a PNG grid (and optionally HDF5).",
        discussion: "Works for every model family: diffusion models (--sampler, --steps, --eta, --guidance), GANs "
            + "and VAEs (--interpolate; VAEs decode prior draws). Conditional models take --class.")

    @Argument(help: "Checkpoint file, a `latest` pointer, a run folder, or an export from `loom export`.")
    var checkpoint: String

    @Argument(help: "Output PNG grid.")
    var output: String

    @Option(help: "Diffusion: ddpm, ddim or dpm_solver (default: the config's).")
    var sampler: String?

    @Option(help: "Diffusion: sampling steps (default: the config's).")
    var steps: Int?

    @Option(help: "Diffusion: DDIM η (default: the config's sample.eta; 0 is deterministic).")
    var eta: Double?

    @Option(help: "Number of images (with --interpolate: number of rows).")
    var n = 64

    @Option(help: "Diffusion: classifier-free guidance scale for conditional models (1: none).")
    var guidance: Double?

    @Option(name: .customLong("class"), help: "Class of every image (default: 0, 1, 2, … in turn).")
    var classLabel: Int?

    @Option(help: "Seed of the initial noise.")
    var seed: UInt64 = 0

    @Option(help: "GANs: each row walks between two random latent vectors in this many points (spherical interpolation); VAEs: between the latents of two encoded test images (linear).")
    var interpolate: Int?

    @Option(help: "Also write the raw samples ([N, H, W, C] float32 in [-1, 1], dataset `samples`) to this HDF5 file.")
    var raw: String?

    @Option(help: "Threads.")
    var threads = 1

    func validate() throws {
        guard n > 0 else { throw ValidationError("--n must be positive, found \(n)") }
        if let steps, steps <= 0 { throw ValidationError("--steps must be positive, found \(steps)") }
        if let interpolate, interpolate < 2 { throw ValidationError("--interpolate needs at least 2 points, found \(interpolate)") }
        guard threads > 0 else { throw ValidationError("--threads must be positive, found \(threads)") }
    }

    func run() throws {
        do {
            Parallel.setThreads(threads)
            let state = try CheckpointStore.read(checkpoint)
            let cfg = try RunConfig.parse(yaml: state.configYAML, name: "\(checkpoint) (/meta/config)")
            let classes = cfg.family.classes
            if let c = classLabel, classes == 0 || !(0..<classes).contains(c) {
                throw ValidationError(classes == 0 ? "--class: this model is unconditional"
                                                   : "--class must be in 0..<\(classes), found \(c)")
            }
            if let steps, let d = cfg.diffusionFamily, steps > d.diffusion.timesteps {
                throw ValidationError("--steps \(steps) exceeds the model's diffusion.timesteps (\(d.diffusion.timesteps))")
            }
            var request = SampleRequest()
            request.count = n
            request.seed = seed
            request.label = classLabel
            request.sampler = sampler
            request.steps = steps
            request.eta = eta
            request.guidance = guidance
            request.interpolate = interpolate
            ConvAlgorithm.current = cfg.convAlgorithm
            let (images, columns) = try cfg.family.sample(config: cfg, checkpoint: state, request: request)
            try PNG.writeGrid(path: output, images: images, columns: columns)
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
