import LoomTensor

/// Where a run is in its data: the epoch and the global position (in samples) of the next
/// global batch in that epoch's permutation. It does not depend on the number of ranks, so
/// a run resumes from it with any world size.
public struct DataCursor: Codable, Equatable, Hashable, Sendable {
    /// Epochs completed.
    public var epoch: Int
    /// Samples of this epoch's permutation already handed out (over all ranks).
    public var position: Int

    /// A cursor at `position` of `epoch` (default: the very start).
    public init(epoch: Int = 0, position: Int = 0) {
        self.epoch = epoch
        self.position = position
    }
}

/// Which samples each rank reads: a permutation of the split from (seed, epoch), cut into
/// global batches of `batchSize × worldSize`, each cut into equal consecutive per-rank parts.
/// Global batch s therefore holds the same samples whatever the world size, and the
/// remainder of an epoch that does not fill a global batch is dropped.
public enum EpochPlan {
    /// The permutation key for `epoch`: the same on every rank.
    static func permutationKey(seed: UInt64, epoch: Int) -> UInt64 {
        splitMix64(RandomStream(seed: seed, purpose: .data).key ^ splitMix64(UInt64(epoch) &+ 1))
    }

    /// The key deciding horizontal flips in `epoch` (per sample, so also rank-independent).
    static func flipKey(seed: UInt64, epoch: Int) -> UInt64 {
        splitMix64(permutationKey(seed: seed, epoch: epoch) ^ 0x666C_6970_666C_6970)
    }

    /// The order of `count` samples in `epoch`: a Philox Fisher–Yates permutation, or the
    /// identity without shuffling.
    public static func permutation(count: Int, seed: UInt64, epoch: Int, shuffle: Bool = true) -> [Int] {
        guard shuffle else { return Array(0..<count) }
        var stream = RandomStream(key: permutationKey(seed: seed, epoch: epoch))
        return stream.permutation(count)
    }

    /// Whether sample `index` is flipped horizontally in `epoch`.
    @inline(__always)
    public static func flips(sample index: Int, seed: UInt64, epoch: Int) -> Bool {
        RandomStream.block(key: flipKey(seed: seed, epoch: epoch), index: UInt64(index)).0 & 1 == 1
    }

    /// Full global batches of `globalBatch` samples in an epoch of `count`.
    public static func stepsPerEpoch(count: Int, globalBatch: Int) -> Int { count / globalBatch }

    /// The cursor that actually produces the next batch: a position whose global batch would
    /// run past the end of the epoch moves to the start of the next epoch.
    public static func normalized(_ cursor: DataCursor, count: Int, globalBatch: Int) -> DataCursor {
        cursor.position + globalBatch > count ? DataCursor(epoch: cursor.epoch + 1, position: 0) : cursor
    }

    /// Positions in the permutation that `rank` reads for the global batch starting at `position`.
    public static func rankSlice(position: Int, batchSize: Int, rank: Int) -> Range<Int> {
        (position + rank * batchSize)..<(position + (rank + 1) * batchSize)
    }

    /// The split indices `rank` of `worldSize` reads in the global batch at `cursor`
    /// (normalised first), and the cursor after that global batch.
    public static func batch(at cursor: DataCursor, count: Int, batchSize: Int, rank: Int, worldSize: Int,
                             seed: UInt64, shuffle: Bool = true) -> (indices: [Int], next: DataCursor) {
        let c = normalized(cursor, count: count, globalBatch: batchSize * worldSize)
        let p = permutation(count: count, seed: seed, epoch: c.epoch, shuffle: shuffle)
        let slice = rankSlice(position: c.position, batchSize: batchSize, rank: rank)
        return (Array(p[slice]), DataCursor(epoch: c.epoch, position: c.position + batchSize * worldSize))
    }
}
