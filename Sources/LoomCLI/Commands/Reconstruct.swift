import ArgumentParser
import Foundation
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom reconstruct CKPT DATASET OUT.png`: a VAE's input/reconstruction pairs and their
/// mean PSNR and L1.
struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode and decode images of a data set with a VAE checkpoint: a PNG grid of input/reconstruction pairs, and the mean PSNR and L1.",
        discussion: "Reconstructions decode the posterior means. PSNR and L1 are measured on the [0, 1] pixel scale, per image, then averaged.")

    @Argument(help: "Checkpoint file, a `latest` pointer, a run folder, or an export from `loom export`.")
    var checkpoint: String

    @Argument(help: "Dataset folder written by `loom prepare`.")
    var dataset: String

    @Argument(help: "Output PNG grid (pairs side by side, 4 pairs per row).")
    var output: String

    @Option(help: "Number of images (the split's first ones).")
    var n = 32

    @Option(help: "Split to read.")
    var split = "test"

    @Option(help: "Threads.")
    var threads = 1

    func validate() throws {
        guard n > 0 else { throw ValidationError("--n must be positive, found \(n)") }
        guard threads > 0 else { throw ValidationError("--threads must be positive, found \(threads)") }
    }

    func run() throws {
        do {
            Parallel.setThreads(threads)
            let state = try CheckpointStore.read(checkpoint)
            let cfg = try RunConfig.parse(yaml: state.configYAML, name: "\(checkpoint) (/meta/config)")
            guard let family = cfg.vaeFamily else {
                throw SampleOptionError("reconstruct needs a VAE checkpoint; this one is model.type \(cfg.family.modelType)")
            }
            ConvAlgorithm.current = cfg.convAlgorithm
            let model = try VAESampling.model(family: family, checkpoint: state)
            let held = try HeldOutImages.read(folder: dataset, split: split, count: n, shape: family.sampleShape)
            let recon = VAESampling.reconstruct(model, family: family, held.images)
            try PNG.writeGrid(path: output, images: VAESampling.interleave(held.images, recon), columns: 8)
            let m = VAESampling.metrics(held.images, recon)
            print(String(format: "%@: %d images of %@ split %@: mean PSNR %.2f dB, mean L1 %.4f (pixels in [0, 1]); wrote %@",
                         checkpoint, held.images.shape[0], dataset, split, m.psnr, m.l1, output))
        } catch let e as ValidationError {
            throw e
        } catch {
            FileHandle.standardError.write(Data("loom reconstruct: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
