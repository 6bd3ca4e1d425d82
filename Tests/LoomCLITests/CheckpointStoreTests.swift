import Foundation
import LoomStorage
import LoomTensor
import Testing

@Suite struct CheckpointStoreTests {
    func names(_ store: CheckpointStore) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: store.folder.path).sorted()
    }

    @Test func savesPublishAtomicallyWithLatestPointerAndRetention() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let store = try CheckpointStore(run: URL(fileURLWithPath: dir), retention: CheckpointRetention(keepLast: 2, milestoneEvery: 4))
        #expect(store.folder.path == URL(fileURLWithPath: dir).standardizedFileURL.path + "/checkpoints")
        #expect(try store.list().isEmpty && store.latest() == nil && store.newestValid() == nil)
        var state = CheckpointFixture.state()
        for step in 1...9 {
            state.step = step
            let url = try store.save(state)
            #expect(url.lastPathComponent == String(format: "step-%08d.h5", step))
            #expect(store.latest() == url)
        }
        // The last two (8, 9) plus the milestones (4, 8); nothing temporary left behind.
        #expect(try names(store) == ["latest", "step-00000004.h5", "step-00000008.h5", "step-00000009.h5"])
        #expect(try store.list().map(\.step) == [4, 8, 9])
        #expect(try String(contentsOf: store.folder.appendingPathComponent("latest"), encoding: .utf8) == "step-00000009.h5\n")
        #expect(store.lastWriteSeconds > 0)
        let newest = try #require(store.newestValid())
        #expect(newest.url.lastPathComponent == "step-00000009.h5" && newest.state.step == 9)
        #expect(newest.state.bitwiseDifference(from: state) == nil)

        // Saving a step again replaces it in place; a smaller keepLast prunes on the next save.
        state.counters["again"] = 1
        try store.save(state)
        #expect(try store.load(store.url(step: 9)).counters["again"] == 1)
        store.retention = CheckpointRetention(keepLast: 1)
        state.step = 10
        try store.save(state)
        #expect(try store.list().map(\.step) == [10])

        #expect(CheckpointStore.step(fileName: "step-00001234.h5") == 1234)
        #expect(CheckpointStore.step(fileName: "step-123456789.h5") == 123_456_789)
        for other in ["latest", ".step-00000001.h5.tmp-1-2", "step-.h5", "step-12a.h5", "step-1.h5.bak"] {
            #expect(CheckpointStore.step(fileName: other) == nil, "\(other)")
        }
        #expect(CheckpointRetention(keepLast: 0).keepLast == 1)
    }

    @Test func corruptAndTruncatedNewestAreSkippedWithReasons() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let store = try CheckpointStore(folder: URL(fileURLWithPath: dir))
        var state = CheckpointFixture.state()
        for step in [100, 200, 300] {
            state.step = step
            try store.save(state)
        }
        let newest = store.url(step: 300).path
        let chunk = try CheckpointFixture.chunkRange(newest, group: "ema", dataset: "conv.weight")
        try CheckpointFixture.flipByte(newest, at: chunk.lowerBound + 1)
        var skipped: [SkippedCheckpoint] = []
        let first = try #require(store.newestValid(skipped: &skipped))
        #expect(first.state.step == 200)
        #expect(skipped.count == 1 && skipped[0].url.path == newest)
        #expect(skipped[0].reason.hasPrefix(newest + ": /ema/conv.weight cannot be read (damaged data)"), "\(skipped[0])")

        let middle = store.url(step: 200).path
        let bytes = try Data(contentsOf: URL(fileURLWithPath: middle))
        try bytes.prefix(bytes.count - 1000).write(to: URL(fileURLWithPath: middle))
        skipped = []
        let second = try #require(store.newestValid(skipped: &skipped))
        #expect(second.state.step == 100 && second.state.bitwiseDifference(from: { var s = state; s.step = 100; return s }()) == nil)
        #expect(skipped.map(\.url.lastPathComponent) == ["step-00000300.h5", "step-00000200.h5"])
        #expect(skipped[1].reason.contains("truncated"), "\(skipped[1])")

        // An unfinished file under a final name (copied mid-write, say) is skipped too.
        try FileManager.default.removeItem(atPath: middle)
        let partial = store.url(step: 250).path
        try Data().write(to: URL(fileURLWithPath: partial))
        skipped = []
        #expect(store.newestValid(skipped: &skipped)?.state.step == 100)
        #expect(skipped.map(\.url.lastPathComponent) == ["step-00000300.h5", "step-00000250.h5"])
        #expect(skipped[1].reason.contains("not an HDF5 file"), "\(skipped[1])")

        // Nothing valid at all.
        try CheckpointFixture.flipByte(store.url(step: 100).path,
                                       at: try CheckpointFixture.chunkRange(store.url(step: 100).path, group: "model", dataset: "conv.bias").lowerBound)
        skipped = []
        #expect(store.newestValid(skipped: &skipped) == nil)
        #expect(skipped.count == 3)
    }

    @Test func backgroundWriteEqualsForegroundWriteAndSnapshotsFirst() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let foreground = try CheckpointStore(folder: URL(fileURLWithPath: dir + "/fg"))
        let background = try CheckpointStore(folder: URL(fileURLWithPath: dir + "/bg"))
        let state = CheckpointFixture.state(step: 5)
        let expected = CheckpointFixture.state(step: 5)  // the same values, never mutated
        try foreground.save(state)
        try background.saveInBackground(state)
        // Training goes on at once: every tensor changes while the write may still run.
        for t in (state.networks + state.optimizers).flatMap(\.tensors).map(\.1) where t.count > 0 {
            for i in 0..<t.count { t.data[i] = 1e9 }
        }
        let url = try #require(try background.waitForPendingWrite())
        #expect(url.lastPathComponent == "step-00000005.h5" && !background.isWriting)
        #expect(try background.waitForPendingWrite() == nil)  // collected once
        let fromBackground = try background.load(url)
        let fromForeground = try foreground.load(foreground.url(step: 5))
        #expect(fromBackground.bitwiseDifference(from: fromForeground, includingCreationTime: true) == nil)
        #expect(fromBackground.bitwiseDifference(from: expected) == nil)
        #expect(background.latest() == url)

        // A failing background write reports its error at the next wait, and only once.
        try background.saveInBackground(CheckpointState(networks: [(name: "rng", tensors: [])], step: 6))
        let failure = Fixture.storageError(["network name", "\"rng\""]) { _ = try background.waitForPendingWrite() }
        #expect(failure.0, "\(failure.1)")
        #expect(try background.waitForPendingWrite() == nil)
        // A second background save waits for the first; both land.
        try background.saveInBackground(CheckpointFixture.state(step: 7))
        try background.saveInBackground(CheckpointFixture.state(step: 8))
        try background.waitForPendingWrite()
        #expect(try background.list().map(\.step) == [5, 7, 8])
    }

    @Test func automaticModeGoesToTheBackgroundAfterASlowWrite() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let store = try CheckpointStore(folder: URL(fileURLWithPath: dir))
        #expect(CheckpointWriteMode.recommended == .automatic && store.automaticThreshold == 1)
        var state = CheckpointFixture.state(step: 1)
        #expect(try store.save(state, mode: .automatic)?.lastPathComponent == "step-00000001.h5")  // fast: foreground
        store.automaticThreshold = 0  // every write now counts as slow
        state.step = 2
        #expect(try store.save(state, mode: .automatic) == nil)  // queued
        #expect(try store.waitForPendingWrite()?.lastPathComponent == "step-00000002.h5")
        store.automaticThreshold = 1e9
        state.step = 3
        #expect(try store.save(state, mode: .automatic) != nil)
        state.step = 4
        #expect(try store.save(state, mode: .background) == nil)
        state.step = 5
        #expect(try store.save(state, mode: .foreground) != nil)  // waits for step 4 first
        #expect(try store.list().map(\.step) == [3, 4, 5])
    }

    @Test func staleTemporariesOfDeadWritersAreRemoved() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        // A process that has exited: its pid names no running writer.
        let done = Process()
        done.executableURL = URL(fileURLWithPath: "/bin/true")
        try done.run()
        done.waitUntilExit()
        let stale = ".step-00000005.h5.tmp-\(done.processIdentifier)-42"
        let mine = ".step-00000006.h5.tmp-\(getpid())-7"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/" + stale))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/" + mine))
        try Data([1]).write(to: URL(fileURLWithPath: dir + "/notes.txt"))
        let store = try CheckpointStore(folder: URL(fileURLWithPath: dir))
        #expect(try names(store) == [mine, "notes.txt"])
        #expect(try store.list().isEmpty)
    }

    @Test func worldSizeChangeIsStatedAndRNGIsPerRank() {
        let state = CheckpointFixture.state(worldSize: 4)
        #expect(state.worldSizeNote(current: 4) == nil)
        let note = state.worldSizeNote(current: 2) ?? ""
        #expect(note.hasPrefix("checkpoint written by 4 ranks, resuming on 2") && note.contains("re-derived"))
        #expect(state.rng["noise"]!.count == 4)
    }
}
