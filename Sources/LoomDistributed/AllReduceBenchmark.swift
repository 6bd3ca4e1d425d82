import CMPI
import Foundation
import LoomTensor

/// Bus bandwidth of all-reduce (as nccl-tests defines it: algorithm bandwidth × 2(n−1)/n)
/// for a raw `MPI_Allreduce` loop, Loom's `Communicator.allReduceSum`, and the
/// `GradientReducer` that training uses.
///
/// The reducer column times what a training step pays in the reducer for its gradients:
/// `synchronize()` of one parameter (one bucket) whose gradient backward's leaf accumulation
/// has just written into the bucket (as after `zeroGrad` and one backward pass), i.e. the
/// bucket bookkeeping, the all-reduce and the averaging. That write itself, which replaces
/// the copy backward makes of every leaf gradient without data parallelism, is not timed.
public enum AllReduceBenchmark {
    /// One message size's results, in GB/s of bus bandwidth (slowest rank's time).
    public struct Row {
        public var bytes: Int
        public var rawBusGBps: Double
        public var communicatorBusGBps: Double
        public var reducerBusGBps: Double
    }

    /// Runs every size in `sizes` (bytes) on all ranks; collective.
    public static func run(_ comm: Communicator, sizes: [Int], budgetSeconds: Double = 0.3) throws -> [Row] {
        var rows: [Row] = []
        for bytes in sizes {
            let count = bytes / 4
            let buffer = Tensor(repeating: 1, shape: [count])
            let iterations = max(3, min(500, Int(budgetSeconds * 2e9 / Double(max(bytes, 4096)))))
            let factor = 2 * Double(comm.size - 1) / Double(comm.size)
            func bandwidth(seconds: Double) throws -> Double {
                Double(bytes) / (try comm.allReduceMax(seconds / Double(iterations))) * factor / 1e9
            }
            func busBandwidth(_ body: () throws -> Void) throws -> Double {
                try body()  // warm-up
                try comm.barrier()
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<iterations { try body() }
                return try bandwidth(seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            let raw = try busBandwidth {
                try Communicator.check("MPI_Allreduce", MPI_Allreduce(loom_mpi_in_place(), buffer.data, Int32(count),
                                                                      loom_mpi_float(), loom_mpi_sum(), comm.comm))
            }
            let wrapped = try busBandwidth { try comm.allReduceSum(buffer.data, count: count) }
            // The reducer: each iteration, untimed, what zeroGrad and backward leave behind (the
            // gradient in the parameter's bucket view), then the timed synchronize().
            let parameter = Tensor.zeros([count], requiresGrad: true)
            let gradient = Tensor(repeating: 1, shape: [count])
            let reducer = GradientReducer(parameters: [parameter], communicator: comm)
            func backwardWrote() {
                parameter.grad = nil
                parameter.accumulateGrad(gradient)
            }
            backwardWrote()
            try reducer.synchronize()  // warm-up
            var seconds = 0.0
            for _ in 0..<iterations {
                backwardWrote()
                try comm.barrier()
                let t0 = DispatchTime.now().uptimeNanoseconds
                try reducer.synchronize()
                seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
            let reduced = try bandwidth(seconds: seconds)
            rows.append(Row(bytes: bytes, rawBusGBps: raw, communicatorBusGBps: wrapped, reducerBusGBps: reduced))
        }
        return rows
    }

    /// Default sizes: 4 KB … 256 MB in steps of 4×.
    public static let defaultSizes = stride(from: 12, through: 28, by: 2).map { 1 << $0 }
}
