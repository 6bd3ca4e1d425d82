import ArgumentParser
import Foundation
import LoomDistributed
import LoomStorage
import LoomTensor
import LoomTraining

/// `mpirun -np N loom encode AE_CKPT DATASET OUT`: a latent data set for latent diffusion.
struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode an image data set with a KL autoencoder into a latent data set for latent diffusion (run under mpirun to split the work).",
        discussion: """
            Every rank encodes its share of the images with the autoencoder's weights; rank 0 writes the \
            output like `loom prepare` (a hidden folder renamed into place). Stored per sample: the posterior \
            mean and standard deviation (`/latents` [n, h, w, 2c], μ then σ), or with --mode mean the mean \
            only; labels are carried over. index.json records the autoencoder's path and checksum and the \
            scale factor 1/std of the latents. The output is the same for any number of ranks.
            """)

    @Argument(help: "The KL autoencoder: a checkpoint file, a `latest` pointer, a run folder or an export.")
    var checkpoint: String

    @Argument(help: "Image data set folder (from `loom prepare`).")
    var dataset: String

    @Argument(help: "Output latent data set folder.")
    var output: String

    @Option(help: "Splits to encode, comma-separated (default: all of them).")
    var split: String?

    @Option(help: "Images per encoder batch.")
    var batch = 64

    @Option(help: "mean_std (posterior mean and std; training draws z = μ + σ·ε) or mean (the mean only).")
    var mode = LatentMode.meanStd.rawValue

    @Option(name: .customLong("per-shard"), help: "Largest number of samples in one shard.")
    var perShard = 10_000

    @Option(help: "gzip level 0-9 (0: uncompressed).")
    var compression = 4

    @Option(help: "Threads per rank.")
    var threads = 1

    @Flag(help: "Replace an existing output folder.")
    var overwrite = false

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func validate() throws {
        try OptionError.check("--batch", batch, in: 1...65_536)
        try OptionError.check("--per-shard", perShard, in: 1...1_000_000_000)
        try OptionError.check("--compression", compression, in: 0...9)
        try OptionError.check("--threads", threads, in: 1...256)
        guard LatentMode(rawValue: mode) != nil else {
            throw OptionError(option: "--mode", value: "'\(mode)'", expected: "one of \(LatentMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let split, split.split(separator: ",", omittingEmptySubsequences: false).contains(where: { $0.isEmpty }) {
            throw OptionError(option: "--split", value: "'\(split)'", expected: "split names separated by commas, e.g. train,test")
        }
    }

    func run() throws {
        let rank0 = (ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0") == "0"
        func fail(_ error: Error) -> ExitCode {
            if rank0 { FileHandle.standardError.write(Data("loom encode: \(error)\n".utf8)) }
            return ExitCode(1)
        }
        // Every mistake in the arguments is found before MPI starts: every rank exits 1, rank 0 says why.
        var options = EncodeOptions()
        let stage: FirstStage
        do {
            Parallel.setThreads(threads)
            stage = try FirstStage.load(checkpoint, role: "the autoencoder")
            ConvAlgorithm.current = stage.config.convAlgorithm
            let index = try LatentEncoding.checkImages(dataset, stage: stage, checkpoint: checkpoint)
            options.splits = split.map { $0.split(separator: ",").map(String.init) }
            _ = try LatentEncoding.splits(of: index, folder: dataset, options: options)
            options.batch = batch
            options.mode = LatentMode(rawValue: mode)!
            options.writer = WriterOptions(samplesPerShard: perShard, compression: compression, overwrite: overwrite)
            if FileManager.default.fileExists(atPath: output) && !overwrite { throw StorageError.alreadyExists(path: output) }
        } catch {
            throw fail(error)
        }
        let comm = try Communicator.world()
        let started = Date()
        do {
            // One rate-and-ETA line per split (the shared ProgressReporter of sample and eval).
            var reporters: [String: ProgressReporter] = [:]
            let progress: ((String, Int, Int) -> Void)? = rank0 && !quiet ? { split, done, total in
                let r = reporters[split] ?? ProgressReporter(label: "encode \(split)", total: total)
                reporters[split] = r
                r.advance(by: done - r.done)
                if done >= total { r.finish() }
            } : nil
            guard let index = try LatentEncoding.run(stage: stage, images: dataset, output: output, options: options,
                                                     communicator: comm.size > 1 ? comm : nil, progress: progress) else { return }
            let record = index.latents!
            let counts = index.splits.keys.sorted().map { "\($0) \(index.splits[$0]!.count)" }.joined(separator: ", ")
            print(String(format: "encoded %@ (%@) with %@ (%@) on %d rank(s) in %.1f s: latents %@ (%@), std %.4f, scale factor %.6f; wrote %@",
                         dataset, counts, stage.file, stage.checksum, comm.size, Date().timeIntervalSince(started),
                         record.latentShape.map(String.init).joined(separator: "×"), record.mode.rawValue, record.std, record.scaleFactor, output))
        } catch {
            // One failing rank must not leave the others waiting in a broadcast forever.
            if comm.size > 1 { comm.abort("loom encode: \(error)") }
            FileHandle.standardError.write(Data("loom encode: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
