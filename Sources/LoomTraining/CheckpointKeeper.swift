import Foundation
import LoomDistributed
import LoomNN
import LoomStorage
import LoomTensor

/// Between the training loop and the checkpoint store: gathers everything a checkpoint
/// holds from every rank (rank 0 writes), and restores a task from the newest good one.
final class CheckpointKeeper {
    static let version = "0.1.0"
    let run: RunDirectory
    let config: RunConfig
    let comm: Communicator
    let store: CheckpointStore?
    /// Checksums of the datasets this run reads (rank 0), recorded in every checkpoint.
    var datasetChecksums: [String: String] = [:]

    init(run: RunDirectory, config: RunConfig, communicator: Communicator) throws {
        self.run = run
        self.config = config
        self.comm = communicator
        let c = config.checkpoint
        store = communicator.rank == 0
            ? try CheckpointStore(folder: run.checkpoints, retention: CheckpointRetention(
                keepLast: c.keepLast, milestoneEvery: c.milestoneEvery > 0 ? c.milestoneEvery : nil))
            : nil
    }

    /// Collective: every rank sends its streams; rank 0 writes the checkpoint.
    func save(task: TrainingTask, cursor: DataCursor, log: (String) -> Void) throws {
        var rng: [String: [RandomStream]] = [:]
        for (purpose, s) in task.streams {
            let keys = try comm.allGather(s.key), counters = try comm.allGather(s.counter)
            rng[purpose] = zip(keys, counters).map { RandomStream(key: $0, counter: $1) }
        }
        try Replicas.verify(task.replicatedParameters, over: comm)
        guard let store else { return }
        let state = CheckpointState(
            networks: task.networks.map { (name: $0.name, tensors: $0.tensors) },
            optimizers: task.optimizers.map { (name: $0.name, tensors: $0.optimizer.stateTensors()) },
            step: task.step, epoch: cursor.epoch, cursor: cursor,
            counters: task.counters,
            rng: rng, configYAML: config.resolvedYAML, loomVersion: CheckpointKeeper.version,
            worldSize: comm.size, datasetChecksums: datasetChecksums, metadata: task.checkpointMetadata)
        // Foreground while a write is fast (a W1 checkpoint takes ~0.1 s), background past 1 s.
        if let url = try store.save(state, mode: .recommended) { log("checkpoint: \(url.path)") }
    }

    /// Waits for any background write.
    func finish() throws { _ = try store?.waitForPendingWrite() }

    /// Loads the newest checkpoint that verifies (rank 0 reads and broadcasts, so every
    /// rank restores the same bytes) into `task`; returns the data cursor, or nil when there
    /// is no checkpoint.
    func restoreNewest(into task: TrainingTask, log: (String) -> Void) throws -> DataCursor? {
        var found: CheckpointState?
        var header = [Double](repeating: 0, count: 4)
        if let store {
            var skipped: [SkippedCheckpoint] = []
            let newest = store.newestValid(skipped: &skipped)
            for s in skipped { log("checkpoint \(s.url.lastPathComponent) skipped: \(s.reason)") }
            if let (url, state) = newest {
                found = state
                log("resuming from \(url.path) (step \(state.step))")
                header = [1, Double(state.step), Double(state.cursor.epoch), Double(state.cursor.position)]
            }
        }
        try comm.allReduceSum(&header)
        guard header[0] > 0 else { log("no checkpoint in \(run.checkpoints.path): starting from scratch"); return nil }

        // Rank 0 read the file; every rank loads the same bytes into the task's live tensors
        // (each group's keys and shapes are checked before it is written).
        var networks: [(String, [(String, Tensor)])] = []
        for (name, _) in task.networks {
            if comm.rank == 0, found?.network(name) == nil { throw CheckpointMismatch.missingGroup(name) }
            networks.append((name, try broadcastNamed(found?.network(name))))
        }
        var optimizers: [[(String, Tensor)]] = []
        for (name, _) in task.optimizers {
            if comm.rank == 0, found?.optimizer(name) == nil { throw CheckpointMismatch.missingGroup(name) }
            optimizers.append(try broadcastNamed(found?.optimizer(name)))
        }
        let counterNames = task.counters.keys.sorted()
        var counters = counterNames.map { Double(found?.counters[$0] ?? 0) } + [Double(found?.worldSize ?? 0)]
        try comm.allReduceSum(&counters)
        for ((name, saved), (_, live)) in zip(networks, task.networks) { try assign(saved, into: live, group: name) }
        for (saved, (_, optimizer)) in zip(optimizers, task.optimizers) { try optimizer.loadState(saved) }
        task.counters = Dictionary(uniqueKeysWithValues: zip(counterNames, counters.map { Int($0) }))
        task.step = Int(header[1])

        // Random streams: exact when the world size matches, re-derived otherwise.
        let savedWorld = Int(counters.last!)
        let sameWorld = savedWorld == comm.size
        let purposes = task.streams
        var restored: [(purpose: String, stream: RandomStream)] = []
        for (purpose, current) in purposes {
            var table = [UInt64](repeating: 0, count: 2 * comm.size)
            if let saved = found?.rng[purpose], saved.count == comm.size {
                for r in 0..<comm.size { table[2 * r] = saved[r].key; table[2 * r + 1] = saved[r].counter }
            }
            var bytes = comm.rank == 0 ? table.withUnsafeBytes { Array($0) } : []
            try comm.broadcast(bytes: &bytes)
            let values = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
            restored.append((purpose, sameWorld && values.count == 2 * comm.size
                ? RandomStream(key: values[2 * comm.rank], counter: values[2 * comm.rank + 1])
                : RandomStream(key: splitMix64(current.key ^ UInt64(task.step)), counter: 0)))
        }
        task.streams = restored
        if !sameWorld {
            log("note: the checkpoint was written by \(savedWorld) rank(s), this run has \(comm.size): per-rank random streams "
                + "are re-derived from the seed and the step (bitwise identity is only promised for the same world size)")
        }
        return DataCursor(epoch: Int(header[2]), position: Int(header[3]))
    }

    /// Rank 0's named tensors on every rank: names and shapes travel as JSON, values as floats.
    private func broadcastNamed(_ tensors: [(String, Tensor)]?) throws -> [(String, Tensor)] {
        struct Entry: Codable { var name: String; var shape: [Int] }
        var bytes: [UInt8] = []
        if comm.rank == 0 {
            bytes = Array(try JSONEncoder().encode((tensors ?? []).map { Entry(name: $0.0, shape: $0.1.shape) }))
        }
        try comm.broadcast(bytes: &bytes)
        let entries = try JSONDecoder().decode([Entry].self, from: Data(bytes))
        let out = comm.rank == 0 ? tensors ?? [] : entries.map { ($0.name, Tensor.zeros($0.shape)) }
        try Replicas.broadcast(out.map(\.1), over: comm)
        return out
    }
}
