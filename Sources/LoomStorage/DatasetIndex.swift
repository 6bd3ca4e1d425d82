import Foundation

/// What a dataset's samples are.
public enum DatasetKind: String, Codable, Sendable {
    /// 8-bit images (`images`, uint8 `[N, H, W, C]`), scaled to [-1, 1] by the loader.
    case images
    /// Float latents for latent diffusion (`latents`, float32 `[N, h, w, c]`), loaded as they are.
    case latents

    /// The HDF5 dataset holding the samples in each shard.
    public var datasetName: String { rawValue }
    /// The stored element type.
    public var element: H5ElementType { self == .images ? .uint8 : .float32 }
}

/// One shard file of a split.
public struct ShardEntry: Codable, Equatable, Sendable {
    /// Path relative to the dataset folder (`train/shard-00000-of-00008.h5`).
    public var file: String
    /// Samples in the shard.
    public var count: Int
    /// Index within the split of the shard's first sample.
    public var first: Int
    /// File size in bytes (a shorter file is truncated).
    public var bytes: Int
}

/// A split (`train`, `val`, `test`): its shards in order.
public struct SplitIndex: Codable, Equatable, Sendable {
    /// Samples in the split.
    public var count: Int
    /// Whether every shard has a `labels` dataset.
    public var hasLabels: Bool
    /// The shard files, in sample order.
    public var shards: [ShardEntry]

    enum CodingKeys: String, CodingKey { case count, hasLabels = "has_labels", shards }
}

/// `index.json`, the small description of a dataset folder: totals, shapes and shard files.
/// Each shard repeats the dataset-wide facts as HDF5 attributes, so a shard alone is
/// self-describing too.
public struct DatasetIndex: Codable, Equatable, Sendable {
    /// The value of `format` in every Loom dataset.
    public static let formatName = "loom-dataset"
    /// The format version this code writes.
    public static let currentVersion = 1
    /// Format versions this code reads.
    public static let supportedVersions = [1]
    /// The index's file name inside the dataset folder.
    public static let fileName = "index.json"

    /// Always `loom-dataset`.
    public var format: String
    /// Format version (see `supportedVersions`).
    public var version: Int
    /// Images or latents.
    public var kind: DatasetKind
    /// Stored element type (`uint8` for images, `float32` for latents).
    public var dtype: H5ElementType
    /// One sample's shape, `[H, W, C]` (NHWC without N).
    public var sampleShape: [Int]
    /// Class names by label (empty when unlabelled).
    public var classNames: [String]
    /// Where the data came from.
    public var source: String
    /// The splits by name.
    public var splits: [String: SplitIndex]
    /// Latent data sets (`loom encode`): the autoencoder, the mode and the scale (absent otherwise).
    public var latents: LatentRecord? = nil

    enum CodingKeys: String, CodingKey {
        case format, version, kind, dtype, sampleShape = "sample_shape", classNames = "class_names", source, splits, latents
    }

    /// Elements per sample.
    public var sampleCount: Int { sampleShape.reduce(1, *) }

    /// The shard file name for shard `index` of `count` in `split`.
    public static func shardPath(split: String, index: Int, count: Int) -> String {
        String(format: "%@/shard-%05d-of-%05d.h5", split, index, count)
    }

    /// Reads and checks `folder/index.json` (format name and version).
    public static func load(folder: String) throws -> DatasetIndex {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StorageError.missing(path: folder, hint: "a dataset folder written by `loom prepare`")
        }
        let path = folder + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StorageError.missing(path: path, hint: "not a Loom dataset, or an interrupted `loom prepare`")
        }
        // Format and version first, so a future layout gets the version message, not a decode error.
        struct Head: Decodable { var format: String?; var version: Int? }
        guard let head = try? JSONDecoder().decode(Head.self, from: data) else {
            throw StorageError.badInput(path: path, detail: "not valid JSON")
        }
        guard head.format == formatName else {
            throw StorageError.schema(path: path, key: "format", expected: "\"\(formatName)\"", found: head.format.map { "\"\($0)\"" } ?? "missing")
        }
        guard let version = head.version, supportedVersions.contains(version) else {
            throw StorageError.unsupportedVersion(path: path, found: head.version ?? -1, supported: supportedVersions)
        }
        let index: DatasetIndex
        do { index = try JSONDecoder().decode(DatasetIndex.self, from: data) } catch {
            throw StorageError.badInput(path: path, detail: "does not match the dataset index schema: \(describe(error))")
        }
        guard index.sampleShape.count == 3, index.sampleShape.allSatisfy({ $0 > 0 }) else {
            throw StorageError.schema(path: path, key: "sample_shape", expected: "[H, W, C] with positive extents",
                                      found: "\(index.sampleShape)")
        }
        guard index.dtype == index.kind.element else {
            throw StorageError.schema(path: path, key: "dtype", expected: index.kind.element.rawValue, found: index.dtype.rawValue)
        }
        try index.latents?.check(index: index, path: path)
        return index
    }

    /// Encodes the index as pretty, key-sorted JSON (stable bytes for the same content).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// A decoding error as one short line.
    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let c):
            return "key \((c.codingPath + [key]).map(\.stringValue).joined(separator: ".")) is missing"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c), DecodingError.dataCorrupted(let c):
            return "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        default:
            return "\(error)"
        }
    }
}
