import Foundation
import LoomMetrics
import LoomStorage
import LoomTensor

/// The real images the metrics compare against: the features of the first `count` images of a
/// dataset split and their mean and covariance. Cached beside the data
/// (`DATASET/.loom-eval/SPLIT-COUNT-FEATURES-INDEX.npz`, keyed by the feature network's
/// checksum and the dataset's `index.json`), in pytorch-fid's `.npz` layout plus `features`.
public struct ReferenceSet {
    public var statistics: FeatureStatistics
    public var features: Matrix
    /// "data/fashion-mnist train[0..<10000]".
    public let description: String
    /// The cache file (written or read), nil when the dataset folder is not writable.
    public let cache: String?

    /// The cache file's path for these settings.
    public static func cachePath(dataset: String, split: String, count: Int, network: FeatureNetwork) throws -> String {
        let indexPath = dataset + "/" + DatasetIndex.fileName
        guard let index = FileManager.default.contents(atPath: indexPath) else {
            throw StorageError.missing(path: indexPath, hint: "--reference must be a dataset folder from `loom prepare`")
        }
        let key = XXH64.hex(XXH64.hash([UInt8](index))).prefix(8)
        let features = network.checksum.replacingOccurrences(of: "xxh64:", with: "")
        return "\(dataset)/.loom-eval/\(split)-\(count)-\(features)-\(key).npz"
    }

    /// The reference of `network` on `dataset`'s `split` (first `count` images): read from the
    /// cache when present and whole, else computed (with `progress`) and cached. `note` gets
    /// one line saying which.
    public static func load(dataset: String, split: String, count: Int, network: FeatureNetwork,
                            progress: ProgressReporter? = nil, note: (String) -> Void = { _ in }) throws -> ReferenceSet {
        let path = try cachePath(dataset: dataset, split: split, count: count, network: network)
        if FileManager.default.fileExists(atPath: path),
           let arrays = try? NPZ.read(path: path), let mu = arrays["mu"], let sigma = arrays["sigma"], let f = arrays["features"],
           f.shape.count == 2, f.shape[1] == network.featureWidth, mu.shape == [network.featureWidth],
           sigma.shape == [network.featureWidth, network.featureWidth],
           let stats = try? FeatureStatistics(mean: mu.values, covariance: Matrix(rows: sigma.shape[0], columns: sigma.shape[1], values: sigma.values)) {
            let set = ReferenceSet(statistics: stats, features: Matrix(rows: f.shape[0], columns: f.shape[1], values: f.values),
                                   description: "\(dataset) \(split)[0..<\(f.shape[0])]", cache: path)
            note("reference: \(set.description), \(f.shape[0]) features from the cache \(path)")
            return set
        }
        let images = try LabelledImages.read(folder: dataset, split: split, count: count, shape: network.imageShape)
        let n = images.images.shape[0]
        let outputs = try network.outputs(images.images, progress: progress)
        progress?.finish()
        let features = network.split(outputs).features
        let stats = try FeatureStatistics(features: features)
        var cached: String? = path
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try NPZ.write(path: path, arrays: [
                ("mu", NPYArray(shape: [stats.dimension], values: stats.mean)),
                ("sigma", NPYArray(shape: [stats.dimension, stats.dimension], values: stats.covariance.values)),
                ("features", NPYArray(shape: [n, features.columns], values: features.values, dtype: .float32)),
            ])
        } catch {
            cached = nil
            note("reference: could not cache the statistics (\(error)); computing them each time")
        }
        // Read back what the cache holds (float32 features), so a first run and a cached run agree.
        let stored = features.values.map { Double(Float($0)) }
        let set = ReferenceSet(statistics: stats, features: Matrix(rows: n, columns: features.columns, values: stored),
                               description: "\(dataset) \(split)[0..<\(n)]", cache: cached)
        note("reference: \(set.description), \(n) features computed" + (cached.map { ", cached in \($0)" } ?? ""))
        return set
    }
}
