import Foundation
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// A fixed batch of images held out of training: the first images of the dataset's test
/// split, or of its train split when it has no test split.
public struct HeldOutImages {
    /// `[N, H, W, C]` in [-1, 1].
    public let images: Tensor
    /// The split they come from (`test` or `train`).
    public let split: String

    /// The first `count` images of `split` of the dataset in `folder` (fewer if it is smaller),
    /// checked against the model's `[H, W, C]`.
    public static func read(folder: String, split: String, count: Int, shape: [Int]) throws -> HeldOutImages {
        let data = try ShardedDataset(folder: folder, split: split, expectedShape: shape, expectedKind: .images)
        defer { data.close() }
        let n = min(count, data.count), per = shape.reduce(1, *)
        var bytes = [UInt8](repeating: 0, count: n * per)
        try bytes.withUnsafeMutableBytes { try data.read(0..<n, into: $0.baseAddress!) }
        let t = Tensor(uninitialized: [n] + shape)
        for i in 0..<bytes.count { t.data[i] = (Float(bytes[i]) - 127.5) / 127.5 }  // as the loader: 0 → -1, 255 → 1
        return HeldOutImages(images: t, split: split)
    }

    /// The held-out batch of a run: `count` images of the test split of `data.path`, else of
    /// its train split; nil when `data.path` holds no dataset (`loom bench train` on synthetic data).
    public static func load(config: RunConfig, count: Int) throws -> HeldOutImages? {
        guard let index = try? DatasetIndex.load(folder: config.data.path) else { return nil }
        let split = index.splits["test"] != nil ? "test" : "train"
        return try read(folder: config.data.path, split: split, count: count, shape: config.family.sampleShape)
    }
}

/// Sampling, reconstruction and their measures for the VAE family (`loom sample`,
/// `loom reconstruct`, previews and the held-out metric).
public enum VAESampling {
    /// Images in [-1, 1] decoded from the posterior means of `images` (eval mode, off the tape).
    public static func reconstruct(_ model: any VariationalAutoencoder, family: VAEFamily, _ images: Tensor) -> Tensor {
        model.eval()
        defer { model.train() }
        return noGrad { family.images(fromDecoded: model.decode(model.encode(images).mean)) }
    }

    /// Images `first ..< first + count` of a run seeded with `seed`, decoded from prior draws
    /// z ~ N(0, I), each from the image's own stream (`IndexedNoise`).
    public static func prior(_ model: any VariationalAutoencoder, family: VAEFamily, count: Int, seed: UInt64, first: Int = 0) -> Tensor {
        var noise = IndexedNoise(seed: seed, indices: first..<(first + count))
        return decode(model, family: family, noise.normal(model.latentShape))
    }

    /// Images in [-1, 1] decoded from latents `z` (eval mode, off the tape).
    public static func decode(_ model: any VariationalAutoencoder, family: VAEFamily, _ z: Tensor) -> Tensor {
        model.eval()
        defer { model.train() }
        return noGrad { family.images(fromDecoded: model.decode(z)) }
    }

    /// `[a0, b0, a1, b1, …]`: pairs side by side in a grid with an even number of columns.
    public static func interleave(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "interleave: \(a.shape) and \(b.shape)")
        let n = a.shape[0]
        return Tensor.concat([a.reshaped([n, 1] + a.shape.dropFirst()), b.reshaped([n, 1] + b.shape.dropFirst())], axis: 1)
            .reshaped([2 * n] + a.shape.dropFirst())
    }

    /// Mean PSNR (dB, peak-to-peak 2 for [-1, 1], i.e. 1 on the [0, 1] scale; per image, then
    /// averaged) and mean absolute error per pixel on the [0, 1] scale between `a` and `b`.
    public static func metrics(_ a: Tensor, _ b: Tensor) -> (psnr: Double, l1: Double) {
        precondition(a.shape == b.shape && a.rank == 4, "metrics: \(a.shape) and \(b.shape)")
        let n = a.shape[0], per = a.count / n
        var psnr = 0.0, l1 = 0.0
        for i in 0..<n {
            var squares = 0.0, absolute = 0.0
            for j in (i * per)..<((i + 1) * per) {
                let d = Double(a.data[j] - b.data[j]) / 2
                squares += d * d
                absolute += Swift.abs(d)
            }
            psnr += 10 * log10(1 / max(squares / Double(per), 1e-10))
            l1 += absolute / Double(per)
        }
        return (psnr / Double(n), l1 / Double(n))
    }

    /// The autoencoder of a checkpoint (`/model`, or `/ema` of a `loom export`).
    public static func model(family: VAEFamily, checkpoint: CheckpointState) throws -> any VariationalAutoencoder {
        guard let weights = checkpoint.network("model") ?? checkpoint.network("ema") else {
            throw SampleOptionError("the checkpoint holds no /model or /ema weights")
        }
        var s = RandomStream(key: 0)
        let m = family.makeModel(stream: &s)
        try m.loadStateDict(weights)
        return m
    }

    /// `loom sample`: prior samples, or with `--interpolate` rows that walk in a straight
    /// line between the posterior means of held-out images 2r and 2r+1 (the test split of
    /// the config's `data.path`), the two ends included.
    static func sample(family: VAEFamily, config: RunConfig, checkpoint: CheckpointState,
                       request: SampleRequest) throws -> (images: Tensor, columns: Int?) {
        for (name, set) in [("--sampler", request.sampler != nil), ("--steps", request.steps != nil),
                            ("--eta", request.eta != nil), ("--guidance", request.guidance != nil),
                            ("--init", request.initImages != nil)] where set {
            throw SampleOptionError("\(name) does not apply to a VAE (model.type \(family.modelType)); it decodes in one pass")
        }
        let m = try model(family: family, checkpoint: checkpoint)
        guard let points = request.interpolate else {
            return (prior(m, family: family, count: request.count, seed: request.seed, first: request.first), nil)
        }
        let rows = request.count
        guard let held = try HeldOutImages.load(config: config, count: 2 * rows), held.images.shape[0] == 2 * rows else {
            throw SampleOptionError("--interpolate encodes \(2 * rows) images of \(config.data.path) (the config's data.path), which has fewer or none")
        }
        let means = noGrad { m.encode(held.images).mean }
        let d = means.count / (2 * rows)
        let z = Tensor(uninitialized: [rows * points] + m.latentShape)
        for r in 0..<rows {
            let a = means.data + 2 * r * d, b = a + d
            for j in 0..<points {
                let t = Float(j) / Float(points - 1), o = z.data + (r * points + j) * d
                for i in 0..<d { o[i] = (1 - t) * a[i] + t * b[i] }
            }
        }
        return (decode(m, family: family, z), points)
    }
}
