import ArgumentParser
import Foundation
import LoomDiffusion
import LoomDistributed
import LoomModels
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom sample CKPT OUT.png`: a grid of samples from a checkpoint's averaged weights; under
/// `mpirun -np N` the images are split over the ranks (the same file for any N).
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample images from a checkpoint's EMA weights into a PNG grid and/or HDF5 (--raw).",
        discussion: "Works for every model family: diffusion models (--sampler, --steps, --eta, --guidance), GANs "
            + "and VAEs (--interpolate; VAEs decode prior draws). Conditional models take --class. Under "
            + "`mpirun -np N` the images are split over the ranks in chunks of --batch; image i's noise comes from "
            + "its own stream (seed, i), so the output is the same for any N.")

    @Argument(help: "Checkpoint file, a `latest` pointer, a run folder, or an export from `loom export`.")
    var checkpoint: String

    @Argument(help: "Output PNG grid (optional with --raw).")
    var output: String?

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

    @Option(help: "Also write the raw samples ([N, H, W, C] float32 in [-1, 1], dataset `samples`; `labels` for conditional models; the sampler settings as attributes) to this HDF5 file; latent diffusion in one process adds the scaled latents (dataset `latents`).")
    var raw: String?

    @Option(help: "Images computed together (one chunk of the work; ranks take chunks in turn).")
    var batch = 64

    @Option(help: "Threads.")
    var threads = 1

    @Flag(help: "No progress line on stderr.")
    var quiet = false

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
        try OptionError.check("--batch", batch, in: 1...10_000)
        if output == nil && raw == nil { throw ValidationError("give an output PNG, --raw OUT.h5, or both") }
        if let strength { try OptionError.check("--strength", strength, in: 0...1) }
        if let resample { try OptionError.check("--resample", resample, in: 1...100) }
        if initImages == nil, let option = [("--strength", strength != nil), ("--mask", mask != nil), ("--resample", resample != nil)].first(where: { $0.1 }) {
            throw ValidationError("\(option.0) edits images: give them with --init")
        }
    }

    func run() throws {
        let comm: Communicator?
        do { comm = try DistributedSampling.launchedCommunicator() } catch {
            FileHandle.standardError.write(Data("loom sample: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let rank = comm?.rank ?? 0, ranks = comm?.size ?? 1
        do {
            Parallel.setThreads(threads)
            let file = try CheckpointStore.resolve(checkpoint)
            let state = try CheckpointFile.read(file)
            let cfg = try RunConfig.parse(yaml: state.configYAML, name: "\(checkpoint) (/meta/config)")
            let classes = cfg.family.classes
            if cfg.classifierFamily != nil {
                throw ValidationError("\(checkpoint) is a classifier (model.type classifier): it does not generate images; use it as `loom eval --features`")
            }
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
            let whole = interpolate != nil || initImages != nil
            if whole && ranks > 1 {
                throw ValidationError("\(interpolate != nil ? "--interpolate" : "--init") runs in one process: start loom sample without mpirun")
            }
            // Sampling keeps fewer activations than training; the training estimate bounds it.
            let drawn = (whole ? n * (interpolate ?? 1) : min(n, batch)) * (classes > 0 ? 2 : 1)
            let bytes = cfg.family.modelSize.trainingBytes(batch: drawn), memory = Double(ProcessInfo.processInfo.physicalMemory)
            if bytes > memory {
                throw OptionError(option: whole ? "--n" : "--batch", value: "\(whole ? n : batch)",
                                  expected: String(format: "smaller: %d images need up to %.1f GB, this machine has %.1f GB", drawn, bytes / 1e9, memory / 1e9))
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
            var columns: Int?
            var latentParts: [Tensor] = []
            let images: Tensor?
            if whole {
                let out = try cfg.family.sample(config: cfg, checkpoint: state, request: request)
                (images, columns) = (out.images, out.columns)
            } else {
                let progress = ProgressReporter(label: "sample", total: n, enabled: !quiet && rank == 0)
                // Latent diffusion's samples are decoded images of its first stage's shape.
                let rowShape = try cfg.diffusionFamily?.outputShape(checkpoint: state, path: file) ?? cfg.family.sampleShape
                images = try DistributedSampling.run(total: n, batch: batch, rowShape: rowShape,
                                                     communicator: comm, progress: progress) { chunk in
                    var part = request
                    part.first = chunk.lowerBound
                    part.count = chunk.count
                    part.latentSink = latentSink.map { _ in LatentSink() }
                    let out = try cfg.family.sample(config: cfg, checkpoint: state, request: part)
                    if let latents = part.latentSink?.latents { latentParts.append(latents) }
                    if chunk.lowerBound == 0 { columns = out.columns }
                    return out.images
                }
                if columns == nil, classLabel == nil, classes > 0, n >= classes, cfg.diffusionFamily != nil { columns = classes }
            }
            guard rank == 0, let images else { return }
            if let output { try PNG.writeGrid(path: output, images: images, columns: columns) }
            // Latents are not gathered over ranks: only a one-process run has them all.
            let latents = whole ? latentSink?.latents : ranks == 1 && !latentParts.isEmpty ? Tensor.concat(latentParts, axis: 0) : nil
            if let raw { try writeRaw(raw, images: images, latents: latents, config: cfg, state: state, whole: whole) }
            print("wrote " + [output, raw].compactMap { $0 }.joined(separator: " and "))
        } catch let error as ExitCode {
            throw error
        } catch {
            // One failing rank must not leave the others waiting in a gather forever.
            if ranks > 1 { comm?.abort("loom sample: \(error)") }
            FileHandle.standardError.write(Data("loom sample: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// The raw samples, their labels (conditional models) and what made them, as HDF5.
    func writeRaw(_ path: String, images: Tensor, latents: Tensor?, config cfg: RunConfig, state: CheckpointState, whole: Bool) throws {
        let file = try H5File.create(path, overwrite: true)
        defer { file.close() }
        try file.root.write("samples", values: images.array, shape: images.shape)
        if let latents { try file.root.write("latents", values: latents.array, shape: latents.shape) }
        let classes = cfg.family.classes
        if classes > 0, !whole {
            try file.root.write("labels", values: (0..<n).map { Int64(classLabel ?? ($0 % classes)) }, shape: [n])
        }
        let root = file.root
        try root.setAttribute("loom_format", "loom-samples")
        try root.setAttribute("checkpoint", checkpoint)
        try root.setAttribute("step", state.step)
        try root.setAttribute("model_type", cfg.family.modelType)
        try root.setAttribute("seed", Int(bitPattern: UInt(seed)))
        try root.setAttribute("count", images.shape[0])
        try root.setAttribute("batch", batch)
        if let classLabel { try root.setAttribute("class", classLabel) }
        if cfg.diffusionFamily != nil {
            try root.setAttribute("sampler", sampler ?? cfg.sample.sampler.rawValue)
            try root.setAttribute("steps", steps ?? cfg.sample.steps)
            try root.setAttribute("eta", eta ?? cfg.sample.eta)
            if classes > 0 { try root.setAttribute("guidance", guidance ?? cfg.sample.guidance) }
        }
        if let interpolate { try root.setAttribute("interpolate", interpolate) }
        if let initImages { try root.setAttribute("init", initImages) }
    }
}
