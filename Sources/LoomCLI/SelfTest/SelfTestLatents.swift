import ArgumentParser
import Foundation
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest latents AE LATENTS IMAGES`: the stored posteriors of a latent data set
/// against the autoencoder run on the source images: decoding the stored means must give the
/// autoencoder's own reconstruction (`VAESampling.reconstruct`), and the stored σ its posterior σ.
struct SelfTestLatents: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "latents")

    @Argument var checkpoint: String
    @Argument var latents: String
    @Argument var images: String
    @Option var split = "test"
    @Option var n = 16

    func run() throws {
        let stage = try FirstStage.load(checkpoint, role: "the autoencoder")
        let index = try DatasetIndex.load(folder: latents)
        guard let record = index.latents else { throw ValidationError("\(latents) has no latents record") }
        let stored = try ShardedDataset(folder: latents, split: split, expectedKind: .latents)
        let count = min(n, stored.count)
        var values = [Float](repeating: 0, count: count * stored.sampleCount)
        try values.withUnsafeMutableBytes { try stored.read(0..<count, into: $0.baseAddress!) }
        let moments = Tensor(values, shape: [count] + record.storedShape)
        let parts = record.mode == .meanStd ? moments.chunked(2, axis: 3) : [moments]
        let held = try HeldOutImages.read(folder: images, split: split, count: count, shape: stage.imageShape)
        let reference = VAESampling.reconstruct(stage.model, family: stage.family, held.images)
        let decoded = noGrad { stage.model.decode(parts[0]) }
        var line = String(format: "selftest latents: %d samples, decode(stored mean) vs reconstruction max |diff| %.3e (max |value| %.3e)",
                          count, maxDifference(decoded, reference), maxAbsolute(reference))
        if record.mode == .meanStd {
            line += String(format: ", stored std vs posterior std max relative diff %.3e", maxRelative(parts[1], stage.posterior(held.images).std))
        }
        print(line)
    }

    func maxDifference(_ a: Tensor, _ b: Tensor) -> Double {
        precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
        return (0..<a.count).reduce(0) { max($0, Double(abs(a.data[$1] - b.data[$1]))) }
    }

    func maxAbsolute(_ a: Tensor) -> Double { (0..<a.count).reduce(0) { max($0, Double(abs(a.data[$1]))) } }

    func maxRelative(_ a: Tensor, _ b: Tensor) -> Double {
        precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
        return (0..<a.count).reduce(0) { max($0, Double(abs(a.data[$1] - b.data[$1]) / max(abs(b.data[$1]), 1e-30))) }
    }
}
