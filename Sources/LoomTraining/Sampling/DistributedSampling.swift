import Foundation
import LoomDistributed
import LoomStorage
import LoomTensor

/// Work split over the ranks for sampling and evaluation: the run's images `0..<total` are cut
/// into chunks of `batch` consecutive indices, chunk k runs on rank k mod N, and rank 0
/// gathers the rows back in index order. With per-index noise (`IndexedNoise`) and a fixed
/// batch, every chunk computes the same numbers on any rank, so the result does not depend on N.
public enum DistributedSampling {
    /// The chunks of `0..<total` that `rank` of `size` computes, in order.
    public static func chunks(total: Int, batch: Int, rank: Int, size: Int) -> [Range<Int>] {
        precondition(batch > 0 && size > 0 && (0..<size).contains(rank))
        let count = (total + batch - 1) / batch
        return stride(from: rank, to: count, by: size).map { k in (k * batch)..<min(total, (k + 1) * batch) }
    }

    /// Runs `body` on this rank's chunks (each returning `[chunk.count] + rowShape`) and
    /// gathers every row to rank 0 in index order: the whole `[total] + rowShape` on rank 0,
    /// nil on the others. `progress` (rank 0's) advances by chunk × ranks, an estimate of the
    /// whole run's progress. Without a communicator (or with one rank) everything runs here.
    public static func run(total: Int, batch: Int, rowShape: [Int], communicator: Communicator?,
                           progress: ProgressReporter? = nil, _ body: (Range<Int>) throws -> Tensor) throws -> Tensor? {
        let rank = communicator?.rank ?? 0, size = communicator?.size ?? 1
        let per = rowShape.reduce(1, *)
        var mine: [Float] = []
        let own = chunks(total: total, batch: batch, rank: rank, size: size)
        mine.reserveCapacity(own.reduce(0) { $0 + $1.count } * per)
        for chunk in own {
            let out = try body(chunk)
            guard out.shape == [chunk.count] + rowShape else {
                throw SamplingShapeError(description: "sampling images \(chunk) gave \(out.shape), expected \([chunk.count] + rowShape)")
            }
            mine.append(contentsOf: UnsafeBufferPointer(start: out.data, count: out.count))
            progress?.advance(by: chunk.count * size)
        }
        guard let communicator, size > 1 else {
            progress?.finish()
            return Tensor(mine, shape: [total] + rowShape)
        }
        let all = try communicator.gather(mine)
        guard rank == 0 else { return nil }
        progress?.finish()
        // Rank r's rows are its chunks r, r + N, … back to back: put each chunk in its place.
        let result = Tensor(uninitialized: [total] + rowShape)
        var offset = 0
        for r in 0..<size {
            for chunk in chunks(total: total, batch: batch, rank: r, size: size) {
                let n = chunk.count * per
                all.withUnsafeBufferPointer { src in
                    (result.data + chunk.lowerBound * per).update(from: src.baseAddress! + offset, count: n)
                }
                offset += n
            }
        }
        return result
    }

    /// The MPI world when this process was started by a launcher (`mpirun`, `srun`), else nil:
    /// a plain `loom sample` needs no MPI at all.
    public static func launchedCommunicator() throws -> Communicator? {
        let env = ProcessInfo.processInfo.environment
        let launched = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].contains { env[$0] != nil }
        return launched ? try Communicator.world() : nil
    }
}

/// A sampled chunk that does not have the shape the gathered file expects (an internal error,
/// reported in one line rather than a trap).
struct SamplingShapeError: Error, CustomStringConvertible {
    let description: String
}
