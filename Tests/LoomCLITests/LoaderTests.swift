import Foundation
import LoomStorage
import LoomTensor
import Testing

@Suite struct LoaderTests {
    @Test(arguments: [1, 2, 3]) func ranksPartitionEachEpoch(worldSize: Int) throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try Fixture.dataset(at: dir + "/ds", count: 100, shape: [2, 2, 1], shards: 3)
        let ds = try ShardedDataset(folder: dir + "/ds")
        let batch = 8
        let steps = 100 / (batch * worldSize)
        var seen: [[Int]] = []
        for rank in 0..<worldSize {
            let loader = try DataLoader(dataset: ds, options: LoaderOptions(batchSize: batch, rank: rank, worldSize: worldSize, seed: 3))
            #expect(loader.stepsPerEpoch == steps)
            var mine: [Int] = []
            for _ in 0..<steps { mine += try loader.next().indices }
            seen.append(mine)
            // The next batch is the next epoch's first.
            #expect(try loader.next().cursor == DataCursor(epoch: 1, position: 0))
        }
        let all = seen.flatMap { $0 }
        #expect(all.count == steps * batch * worldSize)
        #expect(Set(all).count == all.count, "ranks overlap")
        // Exactly the epoch's permutation minus the dropped remainder, rank after rank in
        // batch-sized slices: the plan of README "Dataset format" replayed by `plainOrder`.
        let order = Self.plainOrder(count: 100, seed: 3, epoch: 0)
        #expect(Set(all) == Set(order.prefix(steps * batch * worldSize)))
        for rank in 0..<worldSize {
            var expected: [Int] = []
            for s in 0..<steps {
                let start: Int = (s * worldSize + rank) * batch
                expected += order[start..<(start + batch)]
            }
            #expect(seen[rank] == expected, "rank \(rank) read another order than the plan")
        }
        #expect(Set(all).isSubset(of: 0..<100))
    }

    /// The epoch's order written out without `EpochPlan`: the Philox stream keyed by
    /// splitMix64(data key ⊕ splitMix64(epoch + 1)) drives Fisher–Yates from the last position down.
    static func plainOrder(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        let dataKey = RandomStream(seed: seed, purpose: .data).key
        var stream = RandomStream(key: splitMix64(dataKey ^ splitMix64(UInt64(epoch) + 1)))
        var p = Array(0..<count)
        var i = count - 1
        while i > 0 {
            let (w0, w1, _, _) = RandomStream.block(key: stream.key, index: stream.counter)
            stream.counter += 1
            p.swapAt(i, Int((UInt64(w0) << 32 | UInt64(w1)) % UInt64(i + 1)))
            i -= 1
        }
        return p
    }

    @Test func globalBatchesDoNotDependOnWorldSize() throws {
        // 2 ranks × B see exactly what 1 rank × 2B sees, step by step, and in the same order.
        for step in 0..<5 {
            let cursor = DataCursor(epoch: 2, position: step * 16)
            let one = EpochPlan.batch(at: cursor, count: 90, batchSize: 16, rank: 0, worldSize: 1, seed: 9)
            let r0 = EpochPlan.batch(at: cursor, count: 90, batchSize: 8, rank: 0, worldSize: 2, seed: 9)
            let r1 = EpochPlan.batch(at: cursor, count: 90, batchSize: 8, rank: 1, worldSize: 2, seed: 9)
            #expect(r0.indices + r1.indices == one.indices)
            #expect(r0.next == one.next && r1.next == one.next)
        }
        // A different epoch is a different order; the same epoch is the same.
        #expect(EpochPlan.permutation(count: 50, seed: 1, epoch: 0) != EpochPlan.permutation(count: 50, seed: 1, epoch: 1))
        #expect(EpochPlan.permutation(count: 50, seed: 1, epoch: 4) == EpochPlan.permutation(count: 50, seed: 1, epoch: 4))
        #expect(EpochPlan.permutation(count: 50, seed: 1, epoch: 0, shuffle: false) == Array(0..<50))
    }

    @Test func batchesHoldScaledPixelsAndLabels() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let shape = [3, 4, 3]
        let pixels = try Fixture.dataset(at: dir + "/ds", count: 40, shape: shape, shards: 2)
        let ds = try ShardedDataset(folder: dir + "/ds")
        for residency in [Residency.memory, .stream] {
            for flip in [false, true] {
                let loader = try DataLoader(dataset: ds, options: LoaderOptions(batchSize: 5, seed: 11, flip: flip, residency: residency))
                #expect(loader.inMemory == (residency == .memory))
                var flipped = 0
                for _ in 0..<8 {
                    let b = try loader.next()
                    #expect(b.images.shape == [5, 3, 4, 3])
                    #expect(b.labels == b.indices.map { $0 % 10 })
                    for (k, i) in b.indices.enumerated() {
                        let f = flip && EpochPlan.flips(sample: i, seed: 11, epoch: b.cursor.epoch)
                        if f { flipped += 1 }
                        for y in 0..<3 {
                            for x in 0..<4 {
                                for c in 0..<3 {
                                    let sx = f ? 3 - x : x
                                    let want = Float(pixels[i * 36 + (y * 4 + sx) * 3 + c]) / 127.5 - 1
                                    let got = b.images.data[k * 36 + (y * 4 + x) * 3 + c]
                                    #expect(abs(got - want) < 1e-6)
                                }
                            }
                        }
                    }
                }
                #expect(flip ? (flipped > 5 && flipped < 35) : flipped == 0, "flipped \(flipped) of 40")
            }
        }
        // The extremes map exactly onto -1 and 1.
        let extremes = MemorySamples(values: [UInt8]([0, 255, 0, 255]), sampleCount: 2)
        _ = try DatasetConversion.write(output: dir + "/ext", sampleShape: [1, 2, 1], classNames: [], source: "t",
                                        splits: [("train", extremes)], options: PrepareOptions())
        let e = try DataLoader(dataset: try ShardedDataset(folder: dir + "/ext"), options: LoaderOptions(batchSize: 2, shuffle: false))
        #expect(try e.next().images.array == [-1, 1, -1, 1])
        // Samples of the wrong element type are refused rather than reinterpreted.
        let wrongType = Fixture.storageError(["of type int64", "expected uint8"]) {
            _ = try DatasetConversion.write(output: dir + "/ints", sampleShape: [1, 2, 1], classNames: [], source: "t",
                                            splits: [("train", MemorySamples(values: [0, 255], sampleCount: 2))], options: PrepareOptions())
        }
        #expect(wrongType.0, "\(wrongType.1)")
    }

    @Test func resumesFromASavedCursorWithAnyWorldSize() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try Fixture.dataset(at: dir + "/ds", count: 50, shape: [2, 2, 1], shards: 2)
        let ds = try ShardedDataset(folder: dir + "/ds")
        // An uninterrupted single-rank run with global batch 12: 4 steps per epoch, 10 steps.
        let straight = try DataLoader(dataset: ds, options: LoaderOptions(batchSize: 12, seed: 2, flip: true))
        var reference: [([Int], [Float])] = []
        for _ in 0..<10 { let b = try straight.next(); reference.append((b.indices, b.images.array)) }

        // Stop after 3 steps, save the cursor as JSON, resume with 2 ranks of 6 each.
        let first = try DataLoader(dataset: ds, options: LoaderOptions(batchSize: 12, seed: 2, flip: true))
        for _ in 0..<3 { _ = try first.next() }
        let saved = try JSONEncoder().encode(first.cursor)
        first.close()
        let cursor = try JSONDecoder().decode(DataCursor.self, from: saved)
        #expect(cursor == DataCursor(epoch: 0, position: 36))
        let ranks = try (0..<2).map { r in
            try DataLoader(dataset: ds, options: LoaderOptions(batchSize: 6, rank: r, worldSize: 2, seed: 2, flip: true,
                                                               residency: r == 0 ? .memory : .stream), cursor: cursor)
        }
        for step in 3..<10 {
            let a = try ranks[0].next(), b = try ranks[1].next()
            #expect(a.indices + b.indices == reference[step].0, "step \(step)")
            #expect(a.images.array + b.images.array == reference[step].1, "step \(step)")
        }
        #expect(ranks[0].cursor == DataCursor(epoch: 2, position: 24))
    }

    @Test func trainingThreadDoesNotWaitWhenTheLoaderIsFaster() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try Fixture.dataset(at: dir + "/ds", count: 256, shape: [8, 8, 3], shards: 2)
        let loader = try DataLoader(dataset: try ShardedDataset(folder: dir + "/ds"),
                                    options: LoaderOptions(batchSize: 16, prefetch: 4, residency: .stream))
        _ = try loader.next()
        let waitedAtStart = loader.waits
        for _ in 0..<15 {
            usleep(10_000)  // a 10 ms "training step"
            _ = try loader.next()
        }
        #expect(loader.waits - waitedAtStart <= 1, "waited \(loader.waits - waitedAtStart) times, \(loader.waitSeconds) s")
    }

    @Test func badOptionsAreErrors() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try Fixture.dataset(at: dir + "/ds", count: 20, shape: [2, 2, 1], shards: 1)
        let ds = try ShardedDataset(folder: dir + "/ds")
        let tooBig = Fixture.storageError(["global batch", "8 × 3 ranks", "20 samples"]) {
            _ = try DataLoader(dataset: ds, options: LoaderOptions(batchSize: 8, rank: 0, worldSize: 3))
        }
        #expect(tooBig.0, "\(tooBig.1)")
        let badRank = Fixture.storageError(["rank 2 of 2"]) {
            _ = try DataLoader(dataset: ds, options: LoaderOptions(batchSize: 2, rank: 2, worldSize: 2))
        }
        #expect(badRank.0, "\(badRank.1)")
    }
}
