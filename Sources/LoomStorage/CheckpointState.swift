import Foundation
import LoomTensor

/// Everything one checkpoint holds, as plain values: what a training loop gathers before a
/// save and gets back on resume. Tensors keep their in-memory (PyTorch) shapes and names.
public struct CheckpointState {
    /// Every network's state dict, in order: `model`, `ema`; for GANs `generator`,
    /// `discriminator`, `generator_ema`. Each tensor list keeps its state-dict order.
    public var networks: [(name: String, tensors: [(String, Tensor)])]
    /// Every optimizer's `stateTensors()` (`state.<param>.exp_avg`, `state.<param>.step` …).
    public var optimizers: [(name: String, tensors: [(String, Tensor)])]
    /// Optimizer steps taken (the global step).
    public var step: Int
    /// Epochs completed.
    public var epoch: Int
    /// The data loader's cursor after the last step.
    public var cursor: DataCursor
    /// Integer positions to restore: EMA updates, gradient-accumulation position,
    /// scheduler position …
    public var counters: [String: Int]
    /// RNG streams per purpose, one per rank (index = rank), gathered to the writer.
    public var rng: [String: [RandomStream]]
    /// The resolved run config as YAML text.
    public var configYAML: String
    /// The Loom version that wrote the checkpoint.
    public var loomVersion: String
    /// Ranks of the run that wrote it (a resume on another count re-derives per-rank state).
    public var worldSize: Int
    /// A checksum per dataset the run reads (see `DatasetChecksum`), by role (`train`, …).
    public var datasetChecksums: [String: String]
    /// When the state was gathered: ISO 8601, UTC, milliseconds.
    public var createdAt: String
    /// Free-form extras (string to string).
    public var metadata: [String: String]

    /// A state; everything but the networks has a neutral default.
    public init(networks: [(name: String, tensors: [(String, Tensor)])] = [],
                optimizers: [(name: String, tensors: [(String, Tensor)])] = [],
                step: Int = 0, epoch: Int = 0, cursor: DataCursor = DataCursor(), counters: [String: Int] = [:],
                rng: [String: [RandomStream]] = [:], configYAML: String = "", loomVersion: String = "",
                worldSize: Int = 1, datasetChecksums: [String: String] = [:],
                createdAt: String = CheckpointState.timestamp(), metadata: [String: String] = [:]) {
        self.networks = networks
        self.optimizers = optimizers
        self.step = step
        self.epoch = epoch
        self.cursor = cursor
        self.counters = counters
        self.rng = rng
        self.configYAML = configYAML
        self.loomVersion = loomVersion
        self.worldSize = worldSize
        self.datasetChecksums = datasetChecksums
        self.createdAt = createdAt
        self.metadata = metadata
    }

    /// The tensors of network `name` (nil when absent).
    public func network(_ name: String) -> [(String, Tensor)]? {
        networks.first { $0.name == name }?.tensors
    }

    /// The state of optimizer `name` (nil when absent).
    public func optimizer(_ name: String) -> [(String, Tensor)]? {
        optimizers.first { $0.name == name }?.tensors
    }

    /// Elements in network `name` (parameters and buffers), 0 when absent.
    public func parameterCount(_ name: String) -> Int {
        network(name)?.reduce(0) { $0 + $1.1.count } ?? 0
    }

    /// A deep copy: every tensor copied off the tape, so training may go on mutating its
    /// own tensors while this copy is written in the background.
    public func snapshot() -> CheckpointState {
        func copies(_ groups: [(name: String, tensors: [(String, Tensor)])]) -> [(name: String, tensors: [(String, Tensor)])] {
            groups.map { (name: $0.name, tensors: $0.tensors.map { ($0.0, $0.1.copy()) }) }
        }
        var s = self
        s.networks = copies(networks)
        s.optimizers = copies(optimizers)
        return s
    }

    /// `date` as ISO 8601 in UTC with milliseconds (`2025-01-31T12:00:00.000Z`).
    public static func timestamp(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: date)
    }

    /// What a resume on `currentWorldSize` ranks has to say, or nil when it matches.
    public func worldSizeNote(current currentWorldSize: Int) -> String? {
        guard currentWorldSize != worldSize else { return nil }
        return "checkpoint written by \(worldSize) rank\(worldSize == 1 ? "" : "s"), resuming on \(currentWorldSize): "
            + "per-rank RNG streams and the data cursor are re-derived; bitwise identity is only promised for the same world size"
    }

    /// The first difference from `other`, bit for bit (tensor bits, shapes, names and order;
    /// every scalar, string and map), or nil when identical. The creation time is compared
    /// only with `includingCreationTime`.
    public func bitwiseDifference(from other: CheckpointState, includingCreationTime: Bool = false) -> String? {
        if let d = CheckpointState.groupDifference("network", networks, other.networks) { return d }
        if let d = CheckpointState.groupDifference("optimizer", optimizers, other.optimizers) { return d }
        if step != other.step { return "step \(step) ≠ \(other.step)" }
        if epoch != other.epoch { return "epoch \(epoch) ≠ \(other.epoch)" }
        if cursor != other.cursor { return "cursor \(cursor) ≠ \(other.cursor)" }
        if counters != other.counters { return "counters \(counters) ≠ \(other.counters)" }
        if rng != other.rng { return "rng \(rng) ≠ \(other.rng)" }
        if configYAML != other.configYAML { return "config text differs" }
        if loomVersion != other.loomVersion { return "loom version \(loomVersion) ≠ \(other.loomVersion)" }
        if worldSize != other.worldSize { return "world size \(worldSize) ≠ \(other.worldSize)" }
        if datasetChecksums != other.datasetChecksums { return "dataset checksums \(datasetChecksums) ≠ \(other.datasetChecksums)" }
        if metadata != other.metadata { return "metadata \(metadata) ≠ \(other.metadata)" }
        if includingCreationTime && createdAt != other.createdAt { return "created at \(createdAt) ≠ \(other.createdAt)" }
        return nil
    }

    private static func groupDifference(_ kind: String, _ a: [(name: String, tensors: [(String, Tensor)])],
                                        _ b: [(name: String, tensors: [(String, Tensor)])]) -> String? {
        if a.map(\.name) != b.map(\.name) { return "\(kind)s \(a.map(\.name)) ≠ \(b.map(\.name))" }
        for (x, y) in zip(a, b) {
            if x.tensors.map(\.0) != y.tensors.map(\.0) { return "\(kind) \(x.name): tensor names or order differ" }
            for ((name, s), (_, t)) in zip(x.tensors, y.tensors) {
                if s.shape != t.shape { return "\(kind) \(x.name): \(name) has shape \(s.shape) ≠ \(t.shape)" }
                if memcmp(s.data, t.data, s.count * MemoryLayout<Float>.size) != 0 {
                    let i = (0..<s.count).first { s.data[$0].bitPattern != t.data[$0].bitPattern } ?? 0
                    return "\(kind) \(x.name): \(name)[\(i)] = \(s.data[i]) ≠ \(t.data[i])"
                }
            }
        }
        return nil
    }
}
