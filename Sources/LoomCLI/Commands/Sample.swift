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

    @Option(name: .customLong("init"), help: "Diffusion editing: images to edit, a PNG (one image or a grid as loom sample writes) or a dataset folder (its test split, with its labels); at most --n of them.")
    var initImages: String?

    @Option(help: "Diffusion editing (SDEdit): fraction of the schedule to run on the --init images, 0…1 (default 1).")
    var strength: Double?

    @Option(help: "Diffusion inpainting: pixels to keep from --init: left, right, top, bottom, center, or a PNG (white keeps).")
    var mask: String?

    @Option(help: "Diffusion inpainting: run each step this many times, noising back in between (RePaint; ddpm or ddim).")
    var resample: Int?

    @Option(help: "Also write the raw samples ([N, H, W, C] float32 in [-1, 1], dataset `samples`) to this HDF5 file; latent diffusion adds the scaled latents (dataset `latents`).")
    var raw: String?

    @Option(help: "Threads.")
    var threads = 1

    func validate() throws {
        try OptionError.check("--n", n, in: 1...10_000)
        if let steps { try OptionError.check("--steps", steps, in: 1...100_000) }
        if let eta { try OptionError.check("--eta", eta, in: 0...1) }
        if let guidance { try OptionError.check("--guidance", guidance, in: 0...100) }
        if let interpolate {
            try OptionError.check("--interpolate", interpolate, in: 2...1000)
            try OptionError.check("--n × --interpolate", n * interpolate, in: 2...10_000)
        }
        try OptionError.check("--threads", threads, in: 1...256)
        if let strength { try OptionError.check("--strength", strength, in: 0...1) }
        if let resample { try OptionError.check("--resample", resample, in: 1...100) }
        if initImages == nil, let option = [("--strength", strength != nil), ("--mask", mask != nil), ("--resample", resample != nil)].first(where: { $0.1 }) {
            throw ValidationError("\(option.0) edits images: give them with --init")
        }
    }

    func run() throws {
        do {
            Parallel.setThreads(threads)
            let file = try CheckpointStore.resolve(checkpoint)
            let state = try CheckpointFile.read(file)
            let cfg = try RunConfig.parse(yaml: state.configYAML, name: "\(checkpoint) (/meta/config)")
            let classes = cfg.family.classes
            if let c = classLabel, classes == 0 || !(0..<classes).contains(c) {
                throw OptionError(option: "--class", value: "\(c)",
                                  expected: classes == 0 ? "absent: this model is unconditional" : "in 0..<\(classes) (the model's classes)")
            }
            if let steps, let d = cfg.diffusionFamily, steps > d.diffusion.timesteps {
                throw OptionError(option: "--steps", value: "\(steps)", expected: "at most the model's diffusion.timesteps (\(d.diffusion.timesteps))")
            }
            if let s = sampler, cfg.diffusionFamily != nil, SamplerType(rawValue: s) == nil {
                throw OptionError(option: "--sampler", value: "'\(s)'", expected: "one of \(SamplerType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            // Sampling keeps fewer activations than training; the training estimate bounds it.
            let drawn = n * (interpolate ?? 1) * (classes > 0 ? 2 : 1)
            let bytes = cfg.family.modelSize.trainingBytes(batch: drawn), memory = Double(ProcessInfo.processInfo.physicalMemory)
            if bytes > memory {
                throw OptionError(option: "--n", value: "\(n)", expected: String(format: "smaller: %d images need up to %.1f GB, this machine has %.1f GB", drawn, bytes / 1e9, memory / 1e9))
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
            request.checkpointPath = file
            let latentSink = raw != nil ? LatentSink() : nil
            request.latentSink = latentSink
            if let initImages {
                // Latent diffusion edits images of its first stage's shape.
                let shape = try cfg.diffusionFamily?.outputShape(checkpoint: state, path: file) ?? cfg.family.sampleShape
                (request.initImages, request.initLabels) = try SampleInputs.images(initImages, shape: shape, limit: n)
                request.strength = strength
                request.resample = resample
                request.mask = try mask.map { try SampleInputs.mask($0, shape: shape, count: request.initImages!.shape[0]) }
                if let r = resample, r > 1, (sampler ?? cfg.sample.sampler.rawValue) == "dpm_solver" {
                    throw ValidationError("--resample needs the ddpm or ddim sampler (DPM-Solver's multistep history cannot jump back)")
                }
            }
            ConvAlgorithm.current = cfg.convAlgorithm
            let (images, columns) = try cfg.family.sample(config: cfg, checkpoint: state, request: request)
            try PNG.writeGrid(path: output, images: images, columns: columns)
            if let raw {
                let file = try H5File.create(raw, overwrite: true)
                try file.root.write("samples", values: images.array, shape: images.shape)
                if let latents = latentSink?.latents { try file.root.write("latents", values: latents.array, shape: latents.shape) }
                file.close()
            }
            print("wrote \(output)" + (raw.map { " and \($0)" } ?? ""))
        } catch {
            FileHandle.standardError.write(Data("loom sample: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
