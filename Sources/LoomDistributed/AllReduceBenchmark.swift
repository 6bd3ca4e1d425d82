import CMPI
import Foundation
import LoomTensor

/// Bus bandwidth of all-reduce (as nccl-tests defines it: algorithm bandwidth × 2(n−1)/n)
/// for a raw `MPI_Allreduce`, Loom's `Communicator.allReduceSum`, and the `GradientReducer`
/// that training uses.
///
/// The reducer column times what a training step pays in the reducer for its gradients:
/// `synchronize()` of one parameter (one bucket) whose gradient backward's leaf accumulation
/// has just written into the bucket (as after `zeroGrad` and one backward pass), i.e. the
/// bucket bookkeeping, the all-reduce and the averaging. That write itself, which replaces
/// the copy backward makes of every leaf gradient without data parallelism, is not timed.
///
/// Every operation starts after a barrier and is timed alone, the same way for all three
/// columns; the three take turns in `rounds` rounds, and each column keeps its best round
/// (the slowest rank's mean time in that round), so that columns compare within one run on a
/// busy machine.
public enum AllReduceBenchmark {
    /// One message size's results, in GB/s of bus bandwidth (slowest rank's time).
    public struct Row {
        public var bytes: Int
        public var rawBusGBps: Double
        public var communicatorBusGBps: Double
        public var reducerBusGBps: Double
    }

    /// One measured variant: untimed preparation, then the timed operation.
    struct Variant {
        var prepare: () -> Void = {}
        var operation: () throws -> Void
    }

    /// Runs every size in `sizes` (bytes) on all ranks; collective.
    public static func run(_ comm: Communicator, sizes: [Int], budgetSeconds: Double = 0.3,
                           rounds: Int = 5) throws -> [Row] {
        var rows: [Row] = []
        let rounds = max(1, rounds)
        for bytes in sizes {
            let count = bytes / 4
            let buffer = Tensor(repeating: 1, shape: [count])
            let total = max(3, min(500, Int(budgetSeconds * 2e9 / Double(max(bytes, 4096)))))
            let iterations = max(1, total / rounds)
            let raw = Variant {
                try Communicator.check("MPI_Allreduce", MPI_Allreduce(loom_mpi_in_place(), buffer.data, Int32(count),
                                                                      loom_mpi_float(), loom_mpi_sum(), comm.comm))
            }
            let wrapped = Variant { try comm.allReduceSum(buffer.data, count: count) }
            // The reducer: what zeroGrad and backward leave behind (the gradient in the
            // parameter's bucket view), then synchronize().
            let parameter = Tensor.zeros([count], requiresGrad: true)
            let gradient = Tensor(repeating: 1, shape: [count])
            let reducer = GradientReducer(parameters: [parameter], communicator: comm)
            let reduced = Variant(prepare: {
                parameter.grad = nil
                parameter.accumulateGrad(gradient)
            }, operation: { try reducer.synchronize() })

            let variants = [raw, wrapped, reduced]
            var best = [Double](repeating: .infinity, count: variants.count)
            for v in variants { v.prepare(); try v.operation() }  // warm-up
            for _ in 0..<rounds {
                for (k, v) in variants.enumerated() {
                    var seconds = 0.0
                    for _ in 0..<iterations {
                        v.prepare()
                        try comm.barrier()
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        try v.operation()
                        seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                    }
                    best[k] = min(best[k], try comm.allReduceMax(seconds / Double(iterations)))
                }
            }
            let factor = 2 * Double(comm.size - 1) / Double(comm.size)
            let bus = best.map { Double(bytes) / $0 * factor / 1e9 }
            rows.append(Row(bytes: bytes, rawBusGBps: bus[0], communicatorBusGBps: bus[1], reducerBusGBps: bus[2]))
        }
        return rows
    }

    /// Default sizes: 4 KB … 256 MB in steps of 4×.
    public static let defaultSizes = stride(from: 12, through: 28, by: 2).map { 1 << $0 }
}
