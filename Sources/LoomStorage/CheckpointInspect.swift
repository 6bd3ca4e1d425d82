import Foundation
import LoomTensor

/// One tensor's name and shape, as `loom inspect` lists it.
public struct TensorSummary: Codable, Equatable, Sendable {
    /// The state-dict name.
    public var name: String
    /// The stored (PyTorch) shape.
    public var shape: [Int]
}

/// A network's or optimizer's tensors as stored, with its checksum.
public struct TensorGroupSummary: Codable, Equatable, Sendable {
    /// The network or optimizer name.
    public var name: String
    /// The stored checksum (`xxh64:…`).
    public var checksum: String
    /// Number of tensors.
    public var tensorCount: Int
    /// Total elements (for a network: its parameters and buffers).
    public var elementCount: Int
    /// Every tensor, in written order.
    public var tensors: [TensorSummary]

    enum CodingKeys: String, CodingKey {
        case name, checksum, tensorCount = "tensor_count", elementCount = "element_count", tensors
    }
}

/// What `loom inspect` shows of a checkpoint: read from the file's attributes and dataset
/// shapes, plus the outcome of a full verification.
public struct CheckpointSummary: Codable, Equatable, Sendable {
    /// The file.
    public var path: String
    /// `loom-checkpoint` or `loom-export`.
    public var format: String
    /// The format version.
    public var formatVersion: Int
    /// Global step.
    public var step: Int
    /// Epochs completed.
    public var epoch: Int
    /// Ranks of the writing run.
    public var worldSize: Int
    /// Loom version of the writer.
    public var loomVersion: String
    /// ISO 8601 creation time.
    public var createdAt: String
    /// The data loader's cursor.
    public var cursor: DataCursor
    /// Integer counters.
    public var counters: [String: Int]
    /// Dataset checksums by role.
    public var datasetChecksums: [String: String]
    /// Free-form extras.
    public var metadata: [String: String]
    /// The run config (YAML text).
    public var config: String
    /// The networks.
    public var networks: [TensorGroupSummary]
    /// The optimizers.
    public var optimizers: [TensorGroupSummary]
    /// RNG streams (ranks) stored per purpose.
    public var rngStreams: [String: Int]
    /// File size in bytes.
    public var bytes: Int
    /// Whether every checksum matched.
    public var verified: Bool
    /// Why verification failed (nil when verified).
    public var problem: String?

    enum CodingKeys: String, CodingKey {
        case path, format, formatVersion = "format_version", step, epoch, worldSize = "world_size"
        case loomVersion = "loom_version", createdAt = "created_at", cursor, counters
        case datasetChecksums = "dataset_checksums", metadata, config, networks, optimizers
        case rngStreams = "rng_streams", bytes, verified, problem
    }
}

extension CheckpointFile {
    /// Whether `path` is an HDF5 file whose root says it is a checkpoint or an export.
    public static func isCheckpoint(_ path: String) -> Bool {
        guard let file = try? H5File.open(path) else { return false }
        defer { file.close() }
        let root = file.root
        defer { root.close() }
        guard let format = try? root.stringAttribute("loom_format") else { return false }
        return format == formatName || format == exportFormatName
    }

    /// The summary of a checkpoint; `verify` also reads every tensor and checks every
    /// checksum (the outcome goes into `verified` and `problem`, it does not throw). Throws
    /// when the layout cannot be read or the file was never finished.
    public static func summary(_ path: String, verify: Bool = true) throws -> CheckpointSummary {
        let file = try open(path)
        defer { file.close() }
        let root = file.root
        defer { root.close() }
        let head = try header(root, path: path)
        guard head.complete else { throw incomplete(path) }

        func group(_ g: H5Group) throws -> TensorGroupSummary {
            var tensors: [TensorSummary] = []
            for name in try g.orderedChildren() {
                let d = try g.openDataset(name)
                tensors.append(TensorSummary(name: name, shape: d.shape))
                d.close()
            }
            return TensorGroupSummary(name: String(g.name.split(separator: "/").last ?? ""),
                                      checksum: (try? g.stringAttribute("checksum")) ?? "missing",
                                      tensorCount: tensors.count,
                                      elementCount: tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }, tensors: tensors)
        }
        var networks: [TensorGroupSummary] = []
        for name in head.networks {
            let g = try root.openGroup(name)
            networks.append(try group(g))
            g.close()
        }
        var optimizers: [TensorGroupSummary] = []
        let og = try root.openGroup("optimizer")
        for name in head.optimizers {
            let g = try og.openGroup(name)
            optimizers.append(try group(g))
            g.close()
        }
        og.close()
        let (record, _) = try readMeta(root, head: head, path: path)
        let bytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
        var summary = CheckpointSummary(
            path: path, format: head.format, formatVersion: head.version,
            step: record.step, epoch: record.epoch, worldSize: record.worldSize, loomVersion: record.loomVersion,
            createdAt: record.createdAt,
            cursor: (try? JSONDecoder().decode(DataCursor.self, from: Data(record.cursor.utf8))) ?? DataCursor(),
            counters: (try? JSONDecoder().decode([String: Int].self, from: Data(record.counters.utf8))) ?? [:],
            datasetChecksums: (try? JSONDecoder().decode([String: String].self, from: Data(record.datasetChecksums.utf8))) ?? [:],
            metadata: (try? JSONDecoder().decode([String: String].self, from: Data(record.metadata.utf8))) ?? [:],
            config: record.config, networks: networks, optimizers: optimizers,
            rngStreams: record.rng.mapValues { $0.count / 2 }, bytes: bytes, verified: false, problem: nil)
        if verify {
            do {
                try CheckpointFile.verify(path)
                summary.verified = true
            } catch {
                summary.problem = "\(error)"
            }
        } else {
            summary.problem = "not verified"
        }
        return summary
    }

    /// Writes a small file holding only network `network`'s tensors (default: `ema`, else
    /// `generator_ema`) under `/ema`, with the config and the step: what sampling needs.
    /// The source is verified first; the output is written beside itself and renamed.
    @discardableResult
    public static func exportEMA(from source: String, to output: String, network: String? = nil,
                                 overwrite: Bool = false) throws -> CheckpointState {
        let state = try read(source)
        let names = state.networks.map(\.name)
        guard let chosen = network ?? ["ema", "generator_ema", "model"].first(where: names.contains) else {
            throw StorageError.badArgument(name: "network", value: "(default ema or generator_ema)",
                                           expected: "one of \(names) in \(source); pass --network")
        }
        guard let tensors = state.network(chosen) else {
            throw StorageError.badArgument(name: "network", value: chosen, expected: "one of \(names) in \(source)")
        }
        if FileManager.default.fileExists(atPath: output) && !overwrite { throw StorageError.alreadyExists(path: output) }
        var metadata = state.metadata
        metadata["exported_from"] = URL(fileURLWithPath: source).lastPathComponent
        metadata["exported_network"] = chosen
        let export = CheckpointState(networks: [(name: "ema", tensors: tensors)], step: state.step, epoch: state.epoch,
                                     configYAML: state.configYAML, loomVersion: state.loomVersion,
                                     worldSize: state.worldSize, createdAt: state.createdAt, metadata: metadata)
        let url = URL(fileURLWithPath: output).standardizedFileURL
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try write(export, to: temporary, format: exportFormatName)
            try CheckpointStore.publish(temporary, as: url.path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        return export
    }
}
