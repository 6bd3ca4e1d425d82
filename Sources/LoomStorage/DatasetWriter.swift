import Foundation

/// How `DatasetWriter` lays out shards and chunks.
public struct WriterOptions: Sendable {
    /// Shards per split; nil derives it from `samplesPerShard`.
    public var shards: Int?
    /// Largest shard when `shards` is nil.
    public var samplesPerShard: Int
    /// gzip level 0…9 (0 stores uncompressed).
    public var compression: Int
    /// Samples per HDF5 chunk; nil aims at about 16 KiB per chunk (the loader reads single
    /// samples, and each read inflates its whole chunk).
    public var chunkSamples: Int?
    /// Fletcher-32 checksums on every chunk, so a corrupted shard fails loudly on read.
    public var checksum: Bool
    /// Replace an existing output folder (still atomically).
    public var overwrite: Bool

    /// Options with the defaults `loom prepare` uses.
    public init(shards: Int? = nil, samplesPerShard: Int = 10_000, compression: Int = 4, chunkSamples: Int? = nil,
                checksum: Bool = true, overwrite: Bool = false) {
        self.shards = shards
        self.samplesPerShard = samplesPerShard
        self.compression = compression
        self.chunkSamples = chunkSamples
        self.checksum = checksum
        self.overwrite = overwrite
    }
}

/// Writes a sharded dataset folder atomically: everything goes into a hidden temporary folder
/// beside the output, every file is fsynced, and one `rename` publishes it. A crash leaves
/// only the hidden folder, never a dataset that looks whole.
public final class DatasetWriter {
    /// The folder being written.
    public let output: String
    /// The hidden folder the shards go to until `commit`.
    public let temporary: String
    /// The index as built so far.
    public private(set) var index: DatasetIndex
    /// The layout options.
    public let options: WriterOptions
    /// Called after each written block with (split, samples done, split total).
    public var progress: ((String, Int, Int) -> Void)?
    private var finished = false

    /// Starts a dataset of `kind` with samples of `sampleShape` (`[H, W, C]`).
    public init(output: String, kind: DatasetKind = .images, sampleShape: [Int], classNames: [String] = [],
                source: String, options: WriterOptions = WriterOptions()) throws {
        guard sampleShape.count == 3, sampleShape.allSatisfy({ $0 > 0 }) else {
            throw StorageError.badArgument(name: "sample shape", value: "\(sampleShape)", expected: "[H, W, C] with positive extents")
        }
        guard (0...9).contains(options.compression) else {
            throw StorageError.badArgument(name: "--compression", value: "\(options.compression)", expected: "a gzip level 0…9")
        }
        guard (options.shards ?? 1) > 0, options.samplesPerShard > 0, (options.chunkSamples ?? 1) > 0 else {
            throw StorageError.badArgument(name: "--shards/--per-shard/--chunk", value: "\(options.shards ?? 0)/\(options.samplesPerShard)/\(options.chunkSamples ?? 0)",
                                           expected: "positive counts")
        }
        let url = URL(fileURLWithPath: output).standardizedFileURL
        self.output = url.path
        let parent = url.deletingLastPathComponent().path
        if FileManager.default.fileExists(atPath: self.output) && !options.overwrite {
            throw StorageError.alreadyExists(path: self.output)
        }
        do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw StorageError.io(path: parent, operation: "create folder", reason: "\(error.localizedDescription)")
        }
        temporary = parent + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(temporary, 0o755) == 0 else { throw StorageError.posix(temporary, "create folder") }
        self.options = options
        index = DatasetIndex(format: DatasetIndex.formatName, version: DatasetIndex.currentVersion, kind: kind,
                             dtype: kind.element, sampleShape: sampleShape, classNames: classNames, source: source, splits: [:])
    }

    /// Records how a latent data set was made (written into `index.json` at `commit`).
    public func setLatents(_ record: LatentRecord) {
        index.latents = record
    }

    /// Bytes of one sample.
    public var sampleBytes: Int { index.sampleCount * index.dtype.byteSize }

    /// Writes split `name` from `source` as one or more shards.
    public func addSplit(_ name: String, from source: SampleSource) throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }), index.splits[name] == nil else {
            throw StorageError.badArgument(name: "split", value: "\"\(name)\"", expected: "a new name of letters, digits, _ or -")
        }
        if let type = source.elementType, type != index.dtype {
            throw StorageError.badArgument(name: "samples of split \(name)", value: "of type \(type.rawValue)",
                                           expected: "\(index.dtype.rawValue) for a dataset of \(index.kind.rawValue)")
        }
        let n = source.count
        let labels = source.labels
        if let labels {
            guard labels.count == n else {
                throw StorageError.badArgument(name: "labels of split \(name)", value: "\(labels.count)", expected: "\(n), one per sample")
            }
            let classes = index.classNames.count
            if let bad = labels.first(where: { $0 < 0 || (classes > 0 && $0 >= classes) }) {
                throw StorageError.badArgument(name: "label in split \(name)", value: "\(bad)",
                                               expected: classes > 0 ? "0…\(classes - 1) (\(classes) classes)" : "non-negative")
            }
        }
        let shardCount = max(1, min(options.shards ?? (n + options.samplesPerShard - 1) / options.samplesPerShard, max(n, 1)))
        guard mkdir(temporary + "/" + name, 0o755) == 0 else { throw StorageError.posix(temporary + "/" + name, "create folder") }
        var entries: [ShardEntry] = []
        for s in 0..<shardCount {
            let range = (n * s / shardCount)..<(n * (s + 1) / shardCount)
            let file = DatasetIndex.shardPath(split: name, index: s, count: shardCount)
            let bytes = try writeShard(temporary + "/" + file, split: name, shard: s, of: shardCount, range: range,
                                       source: source, labels: labels.map { Array($0[range]) }, total: n)
            entries.append(ShardEntry(file: file, count: range.count, first: range.lowerBound, bytes: bytes))
        }
        index.splits[name] = SplitIndex(count: n, hasLabels: labels != nil, shards: entries)
    }

    /// Samples per chunk for this dataset.
    var chunkSamples: Int { options.chunkSamples ?? max(1, (16 << 10) / sampleBytes) }

    private func writeShard(_ path: String, split: String, shard: Int, of shardCount: Int, range: Range<Int>,
                            source: SampleSource, labels: [Int]?, total: Int) throws -> Int {
        let file = try H5File.create(path)
        let root = file.root
        try root.setAttribute("loom_format", DatasetIndex.formatName)
        try root.setAttribute("format_version", DatasetIndex.currentVersion)
        try root.setAttribute("kind", index.kind.rawValue)
        try root.setAttribute("split", split)
        try root.setAttribute("shard_index", shard)
        try root.setAttribute("shard_count", shardCount)
        try root.setAttribute("first_index", range.lowerBound)
        try root.setAttribute("count", range.count)
        try root.setAttribute("sample_shape", index.sampleShape)
        try root.setAttribute("channels", index.sampleShape[2])
        if !index.classNames.isEmpty { try root.setAttribute("class_names", index.classNames) }
        try root.setAttribute("source", index.source)

        let k = chunkSamples
        let samples = try root.createDataset(index.kind.datasetName, type: index.dtype, shape: [range.count] + index.sampleShape,
                                             chunks: [k] + index.sampleShape, compression: options.compression,
                                             shuffle: index.dtype.byteSize > 1, checksum: options.checksum)
        try samples.setAttribute("layout", "NHWC")
        // Blocks of whole chunks, about 4 MiB, bound the memory a conversion needs.
        let block = max(k, ((4 << 20) / sampleBytes) / k * k)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block * sampleBytes, alignment: 64)
        defer { buffer.deallocate() }
        var done = 0
        while done < range.count {
            let m = min(block, range.count - done)
            let from = range.lowerBound + done
            try source.fill(from..<(from + m), into: buffer)
            try samples.writeRows(done, count: m, from: buffer)
            done += m
            progress?(split, from + m, total)
        }
        samples.close()
        if let labels {
            // Fletcher-32 here too: ReaderFuzzTests found a flipped bit in the compressed labels
            // that inflated without error into other labels.
            try root.write("labels", values: labels, shape: [labels.count], chunks: [4096],
                           compression: options.compression, shuffle: true, checksum: options.checksum)
        }
        try file.flush()
        // Every object closed, so HDF5 really closes the file before it is synced.
        root.close()
        file.close()
        try Durable.fsync(path)
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int else {
            throw StorageError.posix(path, "stat")
        }
        return size
    }

    /// Writes `index.json`, syncs everything and renames the folder into place.
    @discardableResult
    public func commit() throws -> DatasetIndex {
        guard !finished else { return index }
        do {
            let indexPath = temporary + "/" + DatasetIndex.fileName
            guard FileManager.default.createFile(atPath: indexPath, contents: try index.encoded()) else {
                throw StorageError.posix(indexPath, "write")
            }
            try Durable.fsync(indexPath)
            for split in index.splits.keys { try Durable.fsync(temporary + "/" + split) }
            try Durable.fsync(temporary)
            try Durable.publish(temporary, as: output, overwrite: options.overwrite)
        } catch {
            discard()
            throw error
        }
        finished = true
        return index
    }

    /// Removes the temporary folder (nothing is published).
    public func discard() {
        if finished { return }
        finished = true
        try? FileManager.default.removeItem(atPath: temporary)
    }

    deinit { discard() }
}

/// fsync and atomic rename helpers.
public enum Durable {
    /// Flushes a file or folder to disk.
    public static func fsync(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw StorageError.posix(path, "open for fsync") }
        defer { close(fd) }
        guard Foundation.fsync(fd) == 0 else { throw StorageError.posix(path, "fsync") }
    }

    /// Renames `temporary` to `output` (on the same file system) and syncs the parent folder.
    /// With `overwrite`, an existing `output` is first moved aside and removed afterwards.
    public static func publish(_ temporary: String, as output: String, overwrite: Bool) throws {
        let parent = URL(fileURLWithPath: output).deletingLastPathComponent().path
        var aside: String?
        if FileManager.default.fileExists(atPath: output) {
            guard overwrite else { throw StorageError.alreadyExists(path: output) }
            let old = parent + "/." + URL(fileURLWithPath: output).lastPathComponent + ".old-\(getpid())"
            try? FileManager.default.removeItem(atPath: old)
            guard rename(output, old) == 0 else { throw StorageError.posix(output, "move aside") }
            aside = old
        }
        guard rename(temporary, output) == 0 else {
            let e = errno
            if let aside { rename(aside, output) }
            throw StorageError.posix(output, "rename into place", e)
        }
        try fsync(parent)
        if let aside { try? FileManager.default.removeItem(atPath: aside) }
    }
}
