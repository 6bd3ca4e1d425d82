import Foundation

/// One split of a dataset folder, opened and checked: every shard present with the size the
/// index records, format version known, attributes and dataset shapes in agreement. Labels
/// (small) are read at open; samples are read on demand or all at once.
public final class ShardedDataset: @unchecked Sendable {
    /// The dataset folder.
    public let folder: String
    /// Its index.
    public let index: DatasetIndex
    /// The split opened.
    public let split: String
    /// Samples in the split.
    public let count: Int
    /// Every label of the split, or nil when unlabelled.
    public let labels: [Int]?

    struct Shard {
        let path: String
        let first: Int
        let count: Int
        let samples: H5Dataset
    }
    private let shards: [Shard]
    private let shardStarts: [Int]

    /// One sample's shape `[H, W, C]`.
    public var sampleShape: [Int] { index.sampleShape }
    /// Elements per sample.
    public var sampleCount: Int { index.sampleCount }
    /// Bytes per sample as stored.
    public var sampleBytes: Int { index.sampleCount * index.dtype.byteSize }
    /// Total bytes of the split's samples (what `readAll` returns).
    public var totalBytes: Int { count * sampleBytes }
    /// The shard files, in sample order.
    public var shardPaths: [String] { shards.map(\.path) }

    /// Opens `split` of the dataset in `folder`. `expectedShape` (`[H, W, C]`, from the model
    /// config) must match when given; `chunkCacheBytes` is HDF5's per-shard chunk cache.
    public init(folder: String, split: String = "train", expectedShape: [Int]? = nil,
                expectedKind: DatasetKind? = nil, chunkCacheBytes: Int = 8 << 20) throws {
        self.folder = URL(fileURLWithPath: folder).standardizedFileURL.path
        let index = try DatasetIndex.load(folder: self.folder)
        let indexPath = self.folder + "/" + DatasetIndex.fileName
        guard let entry = index.splits[split] else {
            throw StorageError.schema(path: indexPath, key: "split", expected: "one of \(index.splits.keys.sorted())", found: "\"\(split)\"")
        }
        if let expectedShape, expectedShape != index.sampleShape {
            throw StorageError.schema(path: indexPath, key: "sample_shape", expected: "\(expectedShape) (the model config's [H, W, C])",
                                      found: "\(index.sampleShape)")
        }
        if let expectedKind, expectedKind != index.kind {
            throw StorageError.schema(path: indexPath, key: "kind", expected: expectedKind.rawValue, found: index.kind.rawValue)
        }
        var next = 0
        for s in entry.shards {
            guard s.first == next, s.count >= 0 else {
                throw StorageError.schema(path: indexPath, key: "\(split) shard \(s.file) first", expected: "\(next)", found: "\(s.first)")
            }
            next += s.count
        }
        guard next == entry.count else {
            throw StorageError.schema(path: indexPath, key: "\(split).count", expected: "\(next) (the sum of its shards)", found: "\(entry.count)")
        }
        // Presence and size of every shard before opening any: the cheapest, clearest checks.
        for s in entry.shards {
            let path = self.folder + "/" + s.file
            guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int else {
                throw StorageError.missing(path: path, hint: "shard \(s.file) of split \(split) is listed in index.json; re-run `loom prepare`")
            }
            if size < s.bytes { throw StorageError.truncated(path: path, expectedBytes: s.bytes, actualBytes: size) }
            if size != s.bytes {
                throw StorageError.schema(path: path, key: "file size", expected: "\(s.bytes) bytes (index.json)", found: "\(size) bytes")
            }
        }
        var opened: [Shard] = []
        var labels: [Int]? = entry.hasLabels ? [] : nil
        for (i, s) in entry.shards.enumerated() {
            let path = self.folder + "/" + s.file
            let file = try H5File.open(path)
            defer { file.close() }
            try ShardedDataset.checkAttributes(file.root, index: index, split: split, shard: i, of: entry.shards.count, entry: s)
            let samples = try file.root.openDataset(index.kind.datasetName, chunkCacheBytes: chunkCacheBytes)
            guard samples.type == index.dtype else {
                throw StorageError.schema(path: path, key: "dataset /\(index.kind.datasetName) type", expected: index.dtype.rawValue, found: samples.type.rawValue)
            }
            guard samples.shape == [s.count] + index.sampleShape else {
                throw StorageError.schema(path: path, key: "dataset /\(index.kind.datasetName) shape",
                                          expected: "\([s.count] + index.sampleShape)", found: "\(samples.shape)")
            }
            if entry.hasLabels {
                let l = try file.root.openDataset("labels")
                defer { l.close() }
                guard l.shape == [s.count], l.type == .int64 || l.type == .int32 || l.type == .uint8 else {
                    throw StorageError.schema(path: path, key: "dataset /labels", expected: "int64 [\(s.count)]",
                                              found: "\(l.type.rawValue) \(l.shape)")
                }
                let values = try l.read(as: Int.self)
                let classes = index.classNames.count
                if let bad = values.firstIndex(where: { $0 < 0 || (classes > 0 && $0 >= classes) }) {
                    throw StorageError.schema(path: path, key: "labels[\(bad)]", expected: classes > 0 ? "0…\(classes - 1)" : "≥ 0",
                                              found: "\(values[bad])")
                }
                labels! += values
            }
            opened.append(Shard(path: path, first: s.first, count: s.count, samples: samples))
        }
        self.index = index
        self.split = split
        self.count = entry.count
        self.labels = labels
        self.shards = opened
        self.shardStarts = opened.map(\.first)
    }

    static func checkAttributes(_ root: H5Group, index: DatasetIndex, split: String, shard: Int, of shardCount: Int,
                                entry: ShardEntry) throws {
        let path = root.path
        let format = try root.stringAttribute("loom_format")
        guard format == DatasetIndex.formatName else {
            throw StorageError.schema(path: path, key: "attribute loom_format", expected: "\"\(DatasetIndex.formatName)\"", found: "\"\(format)\"")
        }
        let version = try root.intAttribute("format_version")
        guard DatasetIndex.supportedVersions.contains(version) else {
            throw StorageError.unsupportedVersion(path: path, found: version, supported: DatasetIndex.supportedVersions)
        }
        func expect<T: Equatable>(_ key: String, _ found: T, _ wanted: T) throws {
            if found != wanted {
                throw StorageError.schema(path: path, key: "attribute \(key)", expected: "\(wanted) (index.json)", found: "\(found)")
            }
        }
        try expect("kind", try root.stringAttribute("kind"), index.kind.rawValue)
        try expect("split", try root.stringAttribute("split"), split)
        try expect("shard_index", try root.intAttribute("shard_index"), shard)
        try expect("shard_count", try root.intAttribute("shard_count"), shardCount)
        try expect("first_index", try root.intAttribute("first_index"), entry.first)
        try expect("count", try root.intAttribute("count"), entry.count)
        try expect("sample_shape", try root.intsAttribute("sample_shape"), index.sampleShape)
    }

    /// The shard holding split sample `i`, and the row inside it.
    @inline(__always)
    func locate(_ i: Int) -> (shard: Int, row: Int) {
        var lo = 0, hi = shardStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if shardStarts[mid] <= i { lo = mid } else { hi = mid - 1 }
        }
        return (lo, i - shardStarts[lo])
    }

    /// Reads samples `range` (consecutive, may span shards) into `destination` as stored.
    public func read(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw StorageError.badArgument(name: "samples of \(folder) split \(split)", value: "\(range)", expected: "within 0..<\(count)")
        }
        var i = range.lowerBound
        while i < range.upperBound {
            let (s, row) = locate(i)
            let n = min(range.upperBound - i, shards[s].count - row)
            try shards[s].samples.readRows(row, count: n, into: destination + (i - range.lowerBound) * sampleBytes)
            i += n
        }
    }

    /// Reads one sample.
    @inline(__always)
    public func read(sample i: Int, into destination: UnsafeMutableRawPointer) throws {
        try read(i..<(i + 1), into: destination)
    }

    /// Reads every sample of the split, in order, as stored bytes.
    public func readAll() throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: totalBytes) { buffer, initialized in
            if let base = buffer.baseAddress { try read(0..<count, into: base) }
            initialized = totalBytes
        }
    }

    /// Closes every shard.
    public func close() {
        for s in shards { s.samples.close() }
    }

    deinit { close() }
}
