import ArgumentParser
import Foundation
import LoomStorage

/// `loom inspect FILE`: a checkpoint's, export's, dataset folder's or shard's summary.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise a checkpoint, an export, a dataset folder or a dataset shard.",
        discussion: """
            Checkpoints: step, config, networks with parameter counts, every tensor with its shape, \
            and each network's and optimizer's checksum; every checksum is verified (exit 1 when \
            the file is damaged). Datasets: kind, shapes, splits, shards and a content checksum.
            """)

    @Argument(help: "A checkpoint or export (.h5), a dataset folder, or one of its shards.")
    var file: String

    @Flag(help: "Print JSON (for scripts) instead of text.")
    var json = false

    @Flag(name: .customLong("no-tensors"), help: "Leave out the per-tensor lines of the text output.")
    var noTensors = false

    mutating func run() throws {
        if URL(fileURLWithPath: file).lastPathComponent == CheckpointStore.latestName {
            // A run's `latest` pointer names the checkpoint to inspect.
            do { file = try CheckpointStore.resolve(file) } catch let error as StorageError {
                FileHandle.standardError.write(Data("loom inspect: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
        do {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
                throw StorageError.missing(path: file, hint: "")
            }
            if isDirectory.boolValue {
                try dataset(folder: file)
            } else if CheckpointFile.isCheckpoint(file) {
                try checkpoint()
            } else {
                try shard()
            }
        } catch let error as StorageError {
            FileHandle.standardError.write(Data("loom inspect: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    func emit<T: Encodable>(_ value: T) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try e.encode(value), as: UTF8.self))
    }

    func checkpoint() throws {
        let s = try CheckpointFile.summary(file)
        defer {
            if let problem = s.problem { FileHandle.standardError.write(Data("loom inspect: \(problem)\n".utf8)) }
        }
        if json {
            try emit(s)
        } else {
            print(text(s))
        }
        if !s.verified { throw ExitCode(1) }
    }

    /// The text form of a checkpoint summary.
    func text(_ s: CheckpointSummary) -> String {
        var lines: [String] = []
        let kind = s.format == CheckpointFile.exportFormatName ? "export" : "checkpoint"
        lines.append("\(kind) \(s.path) (\(s.format) v\(s.formatVersion), \(megabytes(s.bytes)))")
        lines.append("step \(s.step), epoch \(s.epoch), world size \(s.worldSize), cursor epoch \(s.cursor.epoch) position \(s.cursor.position)")
        lines.append("written by loom \(s.loomVersion.isEmpty ? "?" : s.loomVersion) at \(s.createdAt)")
        if !s.counters.isEmpty { lines.append("counters: " + s.counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")) }
        if !s.rngStreams.isEmpty {
            lines.append("rng: " + s.rngStreams.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value) stream\($0.value == 1 ? "" : "s"))" }.joined(separator: ", "))
        }
        for (role, sum) in s.datasetChecksums.sorted(by: { $0.key < $1.key }) { lines.append("dataset \(role): \(sum)") }
        for (key, value) in s.metadata.sorted(by: { $0.key < $1.key }) { lines.append("\(key): \(value)") }
        lines.append(s.verified ? "verified: every checksum matches" : "verified: NO (\(s.problem ?? "unknown problem"))")
        func group(_ g: TensorGroupSummary, _ unit: String) {
            lines.append("  \(g.name): \(grouped(g.elementCount)) \(unit) in \(g.tensorCount) tensors, checksum \(g.checksum)")
            guard !noTensors else { return }
            let width = g.tensors.map(\.name.count).max() ?? 0
            for t in g.tensors {
                lines.append("    " + t.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  [" + t.shape.map(String.init).joined(separator: ", ") + "]")
            }
        }
        lines.append("networks:")
        s.networks.forEach { group($0, "parameters") }
        if s.format != CheckpointFile.exportFormatName {
            lines.append("optimizers:" + (s.optimizers.isEmpty ? " none" : ""))
            s.optimizers.forEach { group($0, "elements") }
        }
        lines.append("config:" + (s.config.isEmpty ? " (empty)" : ""))
        for line in s.config.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            lines.append("  " + line)
        }
        return lines.joined(separator: "\n")
    }

    /// The summary of a dataset folder.
    struct DatasetSummary: Encodable {
        var format = DatasetIndex.formatName
        var path: String
        var checksum: String
        var index: DatasetIndex
    }

    func dataset(folder: String) throws {
        let index = try DatasetIndex.load(folder: folder)
        let checksum = try DatasetChecksum.of(folder: folder)
        if json { return try emit(DatasetSummary(path: folder, checksum: checksum, index: index)) }
        print("dataset \(folder) (\(index.format) v\(index.version))")
        print("\(index.kind.rawValue) \(index.dtype.rawValue), sample shape \(index.sampleShape.map(String.init).joined(separator: "×")) (H×W×C)"
              + (index.classNames.isEmpty ? ", unlabelled" : ", \(index.classNames.count) classes: \(index.classNames.joined(separator: ", "))"))
        print("source: \(index.source)")
        if let l = index.latents {
            print("latents: \(l.latentShape.map(String.init).joined(separator: "×")) (\(l.mode.rawValue)) of \(l.imageShape.map(String.init).joined(separator: "×")) images \(l.images), "
                  + "autoencoder \(l.autoencoder) (\(l.autoencoderChecksum)), std \(String(format: "%.6g", l.std)) on \(l.scaleSplit), scale factor \(String(format: "%.6g", l.scaleFactor))")
        }
        for name in index.splits.keys.sorted() {
            let split = index.splits[name]!
            let bytes = split.shards.map(\.bytes).reduce(0, +)
            print("split \(name): \(grouped(split.count)) samples in \(split.shards.count) shard\(split.shards.count == 1 ? "" : "s") "
                  + "(\(megabytes(bytes)))\(split.hasLabels ? ", labelled" : "")")
            if !noTensors { for shard in split.shards { print("  \(shard.file): \(shard.count) samples from \(shard.first)") } }
        }
        print("checksum: \(checksum)")
    }

    /// One dataset shard (or any other HDF5 file): its root attributes and datasets.
    func shard() throws {
        let f = try H5File.open(file)
        defer { f.close() }
        let root = f.root
        var attributes: [String: String] = [:]
        for name in try root.attributeNames() {
            if let v = try? root.stringsAttribute(name) {
                attributes[name] = v.count == 1 ? v[0] : "[" + v.joined(separator: ", ") + "]"
            } else if let v = try? root.intsAttribute(name) {
                attributes[name] = v.count == 1 ? "\(v[0])" : "\(v)"
            } else if let v = try? root.doublesAttribute(name) {
                attributes[name] = v.count == 1 ? "\(v[0])" : "\(v)"
            }
        }
        guard attributes["loom_format"] == DatasetIndex.formatName else {
            throw StorageError.badInput(path: file, detail: "not a Loom checkpoint, export or dataset shard "
                                        + "(loom_format is \(attributes["loom_format"].map { "\"\($0)\"" } ?? "missing"))")
        }
        var datasets: [String: [Int]] = [:]
        for name in try root.children() {
            if let d = try? root.openDataset(name) { datasets[name] = d.shape; d.close() }
        }
        struct ShardSummary: Encodable { var path: String; var attributes: [String: String]; var datasets: [String: [Int]] }
        if json { return try emit(ShardSummary(path: file, attributes: attributes, datasets: datasets)) }
        print("dataset shard \(file)")
        for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { print("  @\(k) = \(v)") }
        for (k, v) in datasets.sorted(by: { $0.key < $1.key }) { print("  /\(k)  [" + v.map(String.init).joined(separator: ", ") + "]") }
    }
}

/// `1,623,169`.
func grouped(_ n: Int) -> String {
    let digits = String(n)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return out
}

/// `25.9 MB`.
func megabytes(_ bytes: Int) -> String {
    bytes < 1_000_000 ? String(format: "%.1f kB", Double(bytes) / 1e3) : String(format: "%.1f MB", Double(bytes) / 1e6)
}
