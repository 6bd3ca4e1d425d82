import Foundation
import LoomDistributed
import LoomStorage
import LoomTensor

/// What `loom encode` writes.
public struct EncodeOptions {
    /// Splits to encode, in order (nil: every split of the data set, train first).
    public var splits: [String]?
    /// Images per encoder batch.
    public var batch = 64
    /// Mean and std, or the mean only.
    public var mode = LatentMode.meanStd
    /// Shards, compression, overwrite.
    public var writer = WriterOptions()

    public init() {}
}

/// `loom encode`: a latent data set from an image data set and a KL autoencoder, encoded by
/// every MPI rank. Each split is cut into fixed batches of `batch` images; in each round rank r
/// encodes batch (round × ranks + r) and the batches reach rank 0 in order, which writes them
/// through `DatasetWriter` (atomically, as `loom prepare`). A batch is encoded the same way
/// whichever rank takes it, so the files are identical for any number of ranks.
public enum LatentEncoding {
    /// The splits `options` names, checked against the data set (`train` first by default).
    public static func splits(of index: DatasetIndex, folder: String, options: EncodeOptions) throws -> [String] {
        let all = index.splits.keys.sorted { ($0 == "train" ? 0 : 1, $0) < ($1 == "train" ? 0 : 1, $1) }
        guard let wanted = options.splits else { return all }
        for s in wanted where index.splits[s] == nil {
            throw StorageError.schema(path: folder + "/" + DatasetIndex.fileName, key: "split", expected: "one of \(all)", found: "\"\(s)\" (--split)")
        }
        return wanted
    }

    /// Checks that `stage` encodes the images of `folder` (kind and shape); returns its index.
    public static func checkImages(_ folder: String, stage: FirstStage, checkpoint: String) throws -> DatasetIndex {
        let index = try DatasetIndex.load(folder: folder)
        guard index.kind == .images else {
            throw FirstStageError.dataMismatch("\(folder) holds \(index.kind.rawValue), not images: loom encode takes an image data set (from loom prepare)")
        }
        guard index.sampleShape == stage.imageShape else {
            throw FirstStageError.dataMismatch("\(folder) holds \(index.sampleShape) images ([H, W, C]) but the autoencoder \(checkpoint) "
                + "encodes \(stage.imageShape) (its model.image_size and model.in_channels)")
        }
        return index
    }

    /// Encodes and writes the latent data set (collective: every rank calls it with the same
    /// arguments). Rank 0 returns the written index, the other ranks nil. `checkpoint` is the
    /// autoencoder's path as the user gave it.
    @discardableResult
    public static func run(stage: FirstStage, images folder: String, output: String, options: EncodeOptions,
                           communicator: Communicator?, progress: ((String, Int, Int) -> Void)? = nil) throws -> DatasetIndex? {
        let rank = communicator?.rank ?? 0, ranks = communicator?.size ?? 1
        let index = try checkImages(folder, stage: stage, checkpoint: stage.file)
        let splits = try splits(of: index, folder: folder, options: options)
        let latent = stage.latentShape, mode = options.mode
        let perSample = latent.reduce(1, *) * mode.factor
        let writer = rank == 0
            ? try DatasetWriter(output: output, kind: .latents, sampleShape: [latent[0], latent[1], latent[2] * mode.factor],
                                classNames: index.classNames, source: "loom encode of \(folder) with \(stage.file)", options: options.writer)
            : nil
        writer?.progress = progress
        let scaleSplit = splits.contains("train") ? "train" : splits[0]
        var statistics = LatentStatistics()
        // The hidden output folder goes on any failure (before an MPI abort could skip deinit).
        do {
            for split in splits {
                let data = try ShardedDataset(folder: folder, split: split, expectedShape: stage.imageShape, expectedKind: .images)
                defer { data.close() }
                let n = data.count, b = options.batch
                let batches = (n + b - 1) / b, rounds = (batches + ranks - 1) / ranks
                var round = 0
                /// One round: this rank's batch encoded, every batch of the round sent to rank 0 in order.
                func next() throws -> [Float] {
                    defer { round += 1 }
                    var mine: [Float] = []
                    let k = round * ranks + rank
                    if k < batches { mine = try encode(data, (k * b)..<min((k + 1) * b, n), stage: stage, mode: mode) }
                    var out: [Float] = []
                    for root in 0..<ranks {
                        let kk = round * ranks + root
                        guard kk < batches else { break }
                        var buffer = root == rank ? mine : [Float](repeating: 0, count: (min((kk + 1) * b, n) - kk * b) * perSample)
                        if let c = communicator, ranks > 1 {
                            let count = buffer.count
                            try buffer.withUnsafeMutableBufferPointer { try c.broadcast($0.baseAddress!, count: count, root: root) }
                        }
                        if rank == 0 { out += buffer }
                    }
                    if rank == 0 && split == scaleSplit { statistics.add(out, latentChannels: latent[2], mode: mode) }
                    return out
                }
                if let writer {
                    try writer.addSplit(split, from: StreamedSamples(count: n, sampleCount: perSample, labels: data.labels, produce: next))
                } else {
                    while round < rounds { _ = try next() }
                }
            }
        } catch {
            writer?.discard()
            throw error
        }
        guard let writer else { return nil }
        let std = statistics.std
        guard std.isFinite, std > 0 else {
            writer.discard()
            throw FirstStageError.dataMismatch("the latents of \(folder) split \(scaleSplit) have standard deviation \(std): no scale factor (is the autoencoder trained?)")
        }
        writer.setLatents(LatentRecord(mode: mode, latentShape: latent, imageShape: stage.imageShape, scaleFactor: 1 / std, std: std,
                                       scaleSplit: scaleSplit, autoencoder: stage.file, autoencoderChecksum: stage.checksum, images: folder))
        return try writer.commit()
    }

    /// The posterior of images `range` of `data` as floats per sample: `[h, w, 2c]` (μ then σ
    /// per position) or `[h, w, c]` (μ).
    static func encode(_ data: ShardedDataset, _ range: Range<Int>, stage: FirstStage, mode: LatentMode) throws -> [Float] {
        var bytes = [UInt8](repeating: 0, count: range.count * data.sampleBytes)
        try bytes.withUnsafeMutableBytes { try data.read(range, into: $0.baseAddress!) }
        let images = Tensor(uninitialized: [range.count] + data.sampleShape)
        for i in 0..<bytes.count { images.data[i] = (Float(bytes[i]) - 127.5) / 127.5 }  // as the loader: 0 → -1, 255 → 1
        let (mean, std) = stage.posterior(images)
        return (mode == .meanStd ? Tensor.concat([mean, std], axis: 3) : mean).array
    }
}

/// Running sums over latents for the scale factor, in sample order (so the same for any
/// number of ranks): mean and second moment of z = μ + σ·ε in expectation over ε.
struct LatentStatistics {
    var count = 0.0, sum = 0.0, squares = 0.0

    mutating func add(_ values: [Float], latentChannels c: Int, mode: LatentMode) {
        let stride = c * mode.factor
        var i = 0
        while i < values.count {
            for k in 0..<c {
                let mu = Double(values[i + k])
                sum += mu
                squares += mu * mu
                if mode == .meanStd { let s = Double(values[i + c + k]); squares += s * s }
            }
            count += Double(c)
            i += stride
        }
    }

    /// √(E[z²] − E[z]²) over every element.
    var std: Double {
        guard count > 0 else { return .nan }
        let mean = sum / count
        return max(squares / count - mean * mean, 0).squareRoot()
    }
}
