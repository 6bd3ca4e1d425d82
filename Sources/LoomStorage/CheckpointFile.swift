import CHDF5
import Foundation
import LoomTensor

/// One checkpoint as one HDF5 file (layout in README, "Checkpoint format"):
///
///     /<network>/<tensor name>        float32 in PyTorch's shape, Fletcher-32 (rank ≥ 1)
///     /optimizer/<name>/<state name>  float32
///     /rng/<purpose>                  uint64 [world, 2]: (key, counter) per rank
///     /meta                           attributes: step, epoch, cursor, counters …
///     /meta/config                    the run config as text
///
/// Each tensor group carries `checksum` (XXH64 of its tensors, see `checksum(of:)`), `/meta`
/// a checksum of everything else, and the root's `complete` attribute is written last, so
/// `read` rejects any damaged, truncated or unfinished file with a one-line reason.
public enum CheckpointFile {
    /// `loom_format` of a checkpoint.
    public static let formatName = "loom-checkpoint"
    /// `loom_format` of an EMA-only export (`loom export`).
    public static let exportFormatName = "loom-export"
    /// The format version this code writes.
    public static let currentVersion = 1
    /// Format versions this code reads.
    public static let supportedVersions = [1]
    /// Root groups that are not networks.
    public static let reservedNames: Set<String> = ["meta", "optimizer", "rng"]

    // MARK: checksums

    /// XXH64 over, for each tensor in name order (bytewise UTF-8): the name's length and bytes,
    /// the rank and each extent (each as 8 little-endian bytes), and the XXH64 of the tensor's
    /// little-endian float32 bytes. Any flipped bit, renamed, reshaped, added or missing
    /// tensor changes it.
    public static func checksum(of tensors: [(String, Tensor)]) -> UInt64 {
        var h = XXH64()
        for (name, t) in tensors.sorted(by: { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }) {
            h.update(UInt64(name.utf8.count))
            h.update(name)
            h.update(UInt64(t.shape.count))
            for d in t.shape { h.update(UInt64(d)) }
            h.update(XXH64.hash(t.data, count: t.count * MemoryLayout<Float>.size))
        }
        return h.digest()
    }

    /// A checksum as stored: `xxh64:` and 16 hex digits.
    static func label(_ value: UInt64) -> String { "xxh64:" + XXH64.hex(value) }

    /// The values of `/meta` and the root lists exactly as stored (maps as JSON text), so a
    /// checksum over them does not depend on how a JSON encoder formats.
    struct MetaRecord {
        var format: String
        var version: Int
        var networks: [String]
        var optimizers: [String]
        var step: Int
        var epoch: Int
        var worldSize: Int
        var loomVersion: String
        var createdAt: String
        var cursor: String
        var counters: String
        var datasetChecksums: String
        var metadata: String
        var config: String
        var rng: [String: [UInt64]]

        /// XXH64 of every field in this order; strings and lists length-prefixed, integers as
        /// 8 little-endian bytes, RNG purposes in name order with their (key, counter) rows.
        var checksum: UInt64 {
            var h = XXH64()
            func text(_ s: String) { h.update(UInt64(s.utf8.count)); h.update(s) }
            func int(_ v: Int) { h.update(UInt64(bitPattern: Int64(v))) }
            text(format); int(version)
            int(networks.count); networks.forEach(text)
            int(optimizers.count); optimizers.forEach(text)
            int(step); int(epoch); int(worldSize)
            for s in [loomVersion, createdAt, cursor, counters, datasetChecksums, metadata, config] { text(s) }
            let purposes = rng.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            int(purposes.count)
            for p in purposes {
                text(p)
                int(rng[p]!.count)
                rng[p]!.forEach { h.update($0) }
            }
            return h.digest()
        }
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }

    // MARK: writing

    /// Checks names before anything is written: HDF5 reads `/` as a path separator.
    static func validate(_ state: CheckpointState, path: String) throws {
        func check(_ kind: String, _ name: String) throws {
            guard !name.isEmpty, name != ".", !name.contains("/"), !name.contains("\0") else {
                throw StorageError.badArgument(name: "\(kind) name", value: "\"\(name)\"",
                                               expected: "a non-empty name without \"/\" (writing \(path))")
            }
        }
        func unique(_ kind: String, _ names: [String]) throws {
            var seen = Set<String>()
            for n in names where !seen.insert(n).inserted {
                throw StorageError.badArgument(name: kind, value: "\"\(n)\"", expected: "unique names (writing \(path))")
            }
        }
        for n in state.networks {
            try check("network", n.name)
            guard !reservedNames.contains(n.name) else {
                throw StorageError.badArgument(name: "network name", value: "\"\(n.name)\"",
                                               expected: "a name other than \(reservedNames.sorted()) (writing \(path))")
            }
            for (t, _) in n.tensors { try check("tensor in \(n.name)", t) }
            try unique("tensor in network \(n.name)", n.tensors.map(\.0))
        }
        try unique("network", state.networks.map(\.name))
        for o in state.optimizers {
            try check("optimizer", o.name)
            for (t, _) in o.tensors { try check("tensor in optimizer \(o.name)", t) }
            try unique("tensor in optimizer \(o.name)", o.tensors.map(\.0))
        }
        try unique("optimizer", state.optimizers.map(\.name))
        for p in state.rng.keys { try check("rng purpose", p) }
        guard state.worldSize > 0 else {
            throw StorageError.badArgument(name: "world size", value: "\(state.worldSize)", expected: "at least 1")
        }
        guard state.step >= 0, state.epoch >= 0 else {
            throw StorageError.badArgument(name: "step and epoch", value: "\(state.step), \(state.epoch)", expected: "non-negative")
        }
    }

    /// Writes `state` to a new file at `path` (which must not exist), flushes, closes and
    /// fsyncs it. `afterTensor` runs after each tensor is written (the crash-test hook).
    /// Publishing (rename into place) is `CheckpointStore`'s job.
    public static func write(_ state: CheckpointState, to path: String, format: String = formatName,
                             afterTensor: ((H5File) throws -> Void)? = nil) throws {
        try validate(state, path: path)
        let file = try H5File.create(path)
        do {
            try useVersion110Format(file)
            try write(state, into: file, format: format, afterTensor: afterTensor)
            try file.flush()
            file.close()
            try Durable.fsync(path)
        } catch {
            file.close()
            throw error
        }
    }

    /// Switches a new file to HDF5 1.10's object formats: every metadata block then carries
    /// its own checksum (a flipped byte in a header is caught, not misread), and a tensor's
    /// single chunk needs no B-tree (about 2 kB less per tensor). Readable by HDF5 ≥ 1.10.
    static func useVersion110Format(_ file: H5File) throws {
        try H5Library.check(H5Fset_libver_bounds(file.id, H5F_LIBVER_V110, H5F_LIBVER_V110), file.path, "set format version")
    }

    private static func write(_ state: CheckpointState, into file: H5File, format: String,
                              afterTensor: ((H5File) throws -> Void)?) throws {
        let root = file.root
        defer { root.close() }
        try root.setAttribute("loom_format", format)
        try root.setAttribute("format_version", currentVersion)
        try root.setAttribute("networks", state.networks.map(\.name))
        try root.setAttribute("optimizers", state.optimizers.map(\.name))

        func tensorGroup(_ group: H5Group, _ tensors: [(String, Tensor)]) throws {
            for (name, t) in tensors {
                let d = try group.createDataset(name, type: .float32, shape: t.shape, checksum: true)
                try d.writeAll(from: t.data)
                d.close()
                try afterTensor?(file)
            }
            try group.setAttribute("checksum", label(checksum(of: tensors)))
            try group.setAttribute("tensor_count", tensors.count)
            try group.setAttribute("element_count", tensors.reduce(0) { $0 + $1.1.count })
        }
        for n in state.networks {
            let g = try root.createOrderedGroup(n.name)
            try tensorGroup(g, n.tensors)
            g.close()
        }
        let optimizers = try root.createOrderedGroup("optimizer")
        for o in state.optimizers {
            let g = try optimizers.createOrderedGroup(o.name)
            try tensorGroup(g, o.tensors)
            g.close()
        }
        optimizers.close()

        let rngGroup = try root.createGroup("rng")
        var rngValues: [String: [UInt64]] = [:]
        for (purpose, streams) in state.rng {
            let values = streams.flatMap { [$0.key, $0.counter] }
            rngValues[purpose] = values
            try rngGroup.writeUInt64(purpose, values: values, shape: [streams.count, 2])
        }
        try rngGroup.setAttribute("columns", ["key", "counter"])
        rngGroup.close()

        let record = MetaRecord(format: format, version: currentVersion, networks: state.networks.map(\.name),
                                optimizers: state.optimizers.map(\.name), step: state.step, epoch: state.epoch,
                                worldSize: state.worldSize, loomVersion: state.loomVersion, createdAt: state.createdAt,
                                cursor: json(state.cursor), counters: json(state.counters),
                                datasetChecksums: json(state.datasetChecksums), metadata: json(state.metadata),
                                config: state.configYAML, rng: rngValues)
        let meta = try root.createGroup("meta")
        try meta.setAttribute("step", record.step)
        try meta.setAttribute("epoch", record.epoch)
        try meta.setAttribute("world_size", record.worldSize)
        try meta.setAttribute("loom_version", record.loomVersion)
        try meta.setAttribute("created_at", record.createdAt)
        try meta.setAttribute("cursor", record.cursor)
        try meta.setAttribute("counters", record.counters)
        try meta.setAttribute("dataset_checksums", record.datasetChecksums)
        try meta.setAttribute("metadata", record.metadata)
        try meta.writeText("config", record.config)
        try meta.setAttribute("checksum", label(record.checksum))
        meta.close()
        // Last: a file without it was never finished.
        try root.setAttribute("complete", 1)
    }

    // MARK: reading

    /// Reads and verifies a checkpoint (or an export): format and version, the `complete`
    /// marker, every dataset's Fletcher-32 and every group's and `/meta`'s checksum. Any
    /// damage is a `StorageError` whose message names the file and the first problem.
    public static func read(_ path: String) throws -> CheckpointState {
        let file = try open(path)
        defer { file.close() }
        let root = file.root
        defer { root.close() }
        let head = try header(root, path: path)
        guard head.complete else { throw incomplete(path) }

        var networks: [(name: String, tensors: [(String, Tensor)])] = []
        for name in head.networks {
            let g = try root.openGroup(name)
            networks.append((name: name, tensors: try readTensors(g, path: path)))
            g.close()
        }
        var optimizers: [(name: String, tensors: [(String, Tensor)])] = []
        let og = try root.openGroup("optimizer")
        for name in head.optimizers {
            let g = try og.openGroup(name)
            optimizers.append((name: name, tensors: try readTensors(g, path: path)))
            g.close()
        }
        og.close()

        let (record, stored) = try readMeta(root, head: head, path: path)
        let computed = record.checksum
        guard stored == label(computed) else {
            throw StorageError.badInput(path: path, detail: "checksum of /meta and /rng does not match (stored \(stored), "
                                        + "computed \(label(computed))): the file is damaged")
        }
        var rng: [String: [RandomStream]] = [:]
        for (purpose, values) in record.rng {
            rng[purpose] = stride(from: 0, to: values.count, by: 2).map { RandomStream(key: values[$0], counter: values[$0 + 1]) }
        }
        func decode<T: Decodable>(_ type: T.Type, _ text: String, _ key: String) throws -> T {
            guard let v = try? JSONDecoder().decode(T.self, from: Data(text.utf8)) else {
                throw StorageError.schema(path: path, key: "attribute /meta@\(key)", expected: "JSON of \(T.self)", found: "\"\(text)\"")
            }
            return v
        }
        return CheckpointState(networks: networks, optimizers: optimizers, step: record.step, epoch: record.epoch,
                               cursor: try decode(DataCursor.self, record.cursor, "cursor"),
                               counters: try decode([String: Int].self, record.counters, "counters"),
                               rng: rng, configYAML: record.config, loomVersion: record.loomVersion,
                               worldSize: record.worldSize,
                               datasetChecksums: try decode([String: String].self, record.datasetChecksums, "dataset_checksums"),
                               createdAt: record.createdAt,
                               metadata: try decode([String: String].self, record.metadata, "metadata"))
    }

    /// Verifies a checkpoint completely (as `read` does) without keeping its tensors.
    public static func verify(_ path: String) throws {
        _ = try read(path)
    }

    static func open(_ path: String) throws -> H5File {
        do { return try H5File.open(path) } catch let StorageError.hdf5(p, _, detail) {
            // A 1.10-format file whose writer was killed keeps its "open for write" flag.
            if detail.contains("already open for write") {
                throw StorageError.badInput(path: p, detail: "incomplete checkpoint (its writer never closed it): its write was interrupted")
            }
            // HDF5 notices a short file on open ("truncated file: eof = …").
            throw StorageError.badInput(path: p, detail: "cannot be opened (truncated or damaged): \(detail)")
        }
    }

    static func incomplete(_ path: String) -> StorageError {
        .badInput(path: path, detail: "incomplete checkpoint (no complete marker): its write was interrupted")
    }

    /// The root's format facts and group lists.
    struct Header {
        var format: String
        var version: Int
        var complete: Bool
        var networks: [String]
        var optimizers: [String]
    }

    static func header(_ root: H5Group, path: String) throws -> Header {
        guard root.hasAttribute("loom_format") else {
            throw StorageError.badInput(path: path, detail: "not a Loom checkpoint (no loom_format attribute)")
        }
        let format = try root.stringAttribute("loom_format")
        guard format == formatName || format == exportFormatName else {
            throw StorageError.schema(path: path, key: "attribute @loom_format", expected: "\"\(formatName)\" or \"\(exportFormatName)\"",
                                      found: "\"\(format)\"")
        }
        let version = try root.intAttribute("format_version")
        guard supportedVersions.contains(version) else {
            throw StorageError.unsupportedVersion(path: path, found: version, supported: supportedVersions)
        }
        let complete = root.hasAttribute("complete") && (try? root.intAttribute("complete")) == 1
        return Header(format: format, version: version, complete: complete,
                      networks: try root.stringsAttribute("networks"), optimizers: try root.stringsAttribute("optimizers"))
    }

    /// Reads a tensor group in its written order and checks its checksum.
    static func readTensors(_ group: H5Group, path: String) throws -> [(String, Tensor)] {
        var tensors: [(String, Tensor)] = []
        for name in try group.orderedChildren() {
            let d = try group.openDataset(name)
            defer { d.close() }
            guard d.type == .float32 else {
                throw StorageError.schema(path: path, key: "dataset \(d.name) type", expected: "float32", found: d.type.rawValue)
            }
            let t = Tensor(uninitialized: d.shape)
            do { try d.readAll(into: t.data) } catch let StorageError.hdf5(_, _, detail) {
                throw StorageError.badInput(path: path, detail: "\(d.name) cannot be read (damaged data): \(detail)")
            }
            tensors.append((name, t))
        }
        let stored = try group.stringAttribute("checksum")
        let computed = label(checksum(of: tensors))
        guard stored == computed else {
            throw StorageError.badInput(path: path, detail: "checksum of \(group.name) does not match (stored \(stored), "
                                        + "computed \(computed)): the file is damaged")
        }
        return tensors
    }

    /// `/meta`'s values and `/rng` as stored, and the stored meta checksum.
    static func readMeta(_ root: H5Group, head: Header, path: String) throws -> (MetaRecord, String) {
        let meta = try root.openGroup("meta")
        defer { meta.close() }
        let rngGroup = try root.openGroup("rng")
        defer { rngGroup.close() }
        var rng: [String: [UInt64]] = [:]
        for purpose in try rngGroup.children() {
            let (values, shape) = try rngGroup.readUInt64(purpose)
            guard shape.count == 2, shape[1] == 2 else {
                throw StorageError.schema(path: path, key: "dataset /rng/\(purpose) shape", expected: "[world, 2]", found: "\(shape)")
            }
            rng[purpose] = values
        }
        let record = MetaRecord(format: head.format, version: head.version, networks: head.networks, optimizers: head.optimizers,
                                step: try meta.intAttribute("step"), epoch: try meta.intAttribute("epoch"),
                                worldSize: try meta.intAttribute("world_size"),
                                loomVersion: try meta.stringAttribute("loom_version"),
                                createdAt: try meta.stringAttribute("created_at"), cursor: try meta.stringAttribute("cursor"),
                                counters: try meta.stringAttribute("counters"),
                                datasetChecksums: try meta.stringAttribute("dataset_checksums"),
                                metadata: try meta.stringAttribute("metadata"), config: try meta.readText("config"), rng: rng)
        return (record, try meta.stringAttribute("checksum"))
    }
}
