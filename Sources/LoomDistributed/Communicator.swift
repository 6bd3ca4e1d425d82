import CMPI
import Foundation
import LoomTensor

/// Errors from the MPI layer.
public enum DistributedError: Error, CustomStringConvertible {
    case mpi(call: String, code: Int32)
    case replicasDiverged(what: String, ranks: [Int], firstTensor: String)

    public var description: String {
        switch self {
        case let .mpi(call, code):
            var buf = [CChar](repeating: 0, count: Int(loom_mpi_max_library_version_string()))
            var len: Int32 = 0
            MPI_Error_string(code, &buf, &len)
            return "\(call) failed: \(String(cString: buf))"
        case let .replicasDiverged(what, ranks, first):
            return "replicas diverged: \(what) of rank(s) \(ranks.map(String.init).joined(separator: ", ")) differ from rank 0 (first differing tensor: \(first))"
        }
    }
}

/// The process group (MPI_COMM_WORLD). All MPI calls of Loom go through this module.
public final class Communicator: ReplicaReducer {
    /// This process's rank in 0..<size.
    public let rank: Int
    /// Number of processes.
    public let size: Int
    /// Rank among the processes on this node (Open MPI's local rank).
    public let localRank: Int
    /// Number of processes on this node.
    public let localSize: Int
    let comm: MPI_Comm

    nonisolated(unsafe) private static var shared: Communicator?

    /// Initialises MPI once per process (later calls return the same communicator) and
    /// arranges `MPI_Finalize` at exit.
    public static func world() throws -> Communicator {
        if let shared { return shared }
        var provided: Int32 = 0
        try check("MPI_Init_thread", MPI_Init_thread(nil, nil, loom_mpi_thread_funneled(), &provided))
        let comm = loom_comm_world()!
        MPI_Comm_set_errhandler(comm, loom_mpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        // Local rank and size: split by shared memory (works under any launcher).
        var node = loom_comm_null()
        try check("MPI_Comm_split_type", MPI_Comm_split_type(comm, loom_mpi_comm_type_shared(), r, loom_mpi_info_null(), &node))
        var lr: Int32 = 0, ls: Int32 = 0
        MPI_Comm_rank(node, &lr)
        MPI_Comm_size(node, &ls)
        MPI_Comm_free(&node)
        let c = Communicator(rank: Int(r), size: Int(s), localRank: Int(lr), localSize: Int(ls), comm: comm)
        shared = c
        atexit { Communicator.finalize() }
        return c
    }

    private init(rank: Int, size: Int, localRank: Int, localSize: Int, comm: MPI_Comm) {
        self.rank = rank
        self.size = size
        self.localRank = localRank
        self.localSize = localSize
        self.comm = comm
    }

    /// Finalises MPI if it was initialised and not yet finalised.
    public static func finalize() {
        var initialized: Int32 = 0, finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        if initialized != 0 && finalized == 0 { MPI_Finalize() }
    }

    /// Sums `count` floats over all ranks, in place (blocking).
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        var offset = 0
        // MPI counts are Int32: reduce very large buffers in pieces.
        while offset < count {
            let n = min(count - offset, Int(Int32.max / 2))
            try Communicator.check("MPI_Allreduce", MPI_Allreduce(loom_mpi_in_place(), buffer + offset, Int32(n),
                                                                  loom_mpi_float(), loom_mpi_sum(), comm))
            offset += n
        }
    }

    /// Starts a non-blocking in-place sum of `count` floats (`count` < 2³¹); finish with `wait`.
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws -> PendingCollective {
        precondition(count < Int(Int32.max), "non-blocking all-reduce of \(count) floats: split it into buckets")
        var request = loom_mpi_request_null()
        try Communicator.check("MPI_Iallreduce", MPI_Iallreduce(loom_mpi_in_place(), buffer, Int32(count),
                                                                loom_mpi_float(), loom_mpi_sum(), comm, &request))
        return PendingCollective(request: request)
    }

    /// Copies `count` floats from `root` to every rank.
    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int = 0) throws {
        var offset = 0
        while offset < count {
            let n = min(count - offset, Int(Int32.max / 2))
            try Communicator.check("MPI_Bcast", MPI_Bcast(buffer + offset, Int32(n), loom_mpi_float(), Int32(root), comm))
            offset += n
        }
    }

    /// Copies `bytes` from `root` to every rank (the other ranks' arrays are resized).
    public func broadcast(bytes: inout [UInt8], root: Int = 0) throws {
        var n = [Double(bytes.count)]
        if rank != root { n[0] = 0 }
        try allReduceSum(&n)
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(n[0])) }
        let count = bytes.count
        try bytes.withUnsafeMutableBytes {
            try Communicator.check("MPI_Bcast", MPI_Bcast($0.baseAddress, Int32(count), loom_mpi_byte(), Int32(root), comm))
        }
    }

    /// Every rank's `value`, in rank order.
    public func allGather(_ value: UInt64) throws -> [UInt64] {
        var mine = value
        var all = [UInt64](repeating: 0, count: size)
        try all.withUnsafeMutableBufferPointer { out in
            try Communicator.check("MPI_Allgather", MPI_Allgather(&mine, 1, loom_mpi_uint64(), out.baseAddress, 1, loom_mpi_uint64(), comm))
        }
        return all
    }

    /// Every rank's `values` concatenated in rank order on `root` (the other ranks get an
    /// empty array); the ranks may hold different counts (distributed sampling's shares).
    public func gather(_ values: [Float], root: Int = 0) throws -> [Float] {
        let counts = try allGather(UInt64(values.count)).map(Int.init)
        let total = counts.reduce(0, +)
        guard total < Int(Int32.max) else {
            throw DistributedError.mpi(call: "MPI_Gatherv of \(total) floats (at most 2^31 − 1)", code: MPI_ERR_COUNT)
        }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(size, 1) where r < size { displacements[r] = displacements[r - 1] + Int32(counts[r - 1]) }
        var out = [Float](repeating: 0, count: rank == root ? total : 0)
        let counts32 = counts.map { Int32($0) }
        try values.withUnsafeBufferPointer { mine in
            try out.withUnsafeMutableBufferPointer { all in
                try Communicator.check("MPI_Gatherv", MPI_Gatherv(mine.baseAddress, Int32(values.count), loom_mpi_float(),
                                                                  all.baseAddress, counts32, displacements, loom_mpi_float(), Int32(root), comm))
            }
        }
        return out
    }

    /// Sums `values` over all ranks, in place.
    public func allReduceSum(_ values: inout [Double]) throws {
        let n = Int32(values.count)
        try values.withUnsafeMutableBufferPointer {
            try Communicator.check("MPI_Allreduce", MPI_Allreduce(loom_mpi_in_place(), $0.baseAddress, n, loom_mpi_double(), loom_mpi_sum(), comm))
        }
    }

    /// Sums `values` over all ranks (synchronised batch norm's statistics).
    public func sumAcrossReplicas(_ values: inout [Double]) throws { try allReduceSum(&values) }

    /// Waits until every rank has arrived.
    public func barrier() throws { try Communicator.check("MPI_Barrier", MPI_Barrier(comm)) }

    /// Ends the whole job after printing `message` (never hangs the other ranks).
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("loom: rank \(rank): \(message)\n".utf8))
        MPI_Abort(comm, code)
        exit(code)
    }

    /// Largest value of `x` over all ranks.
    public func allReduceMax(_ x: Double) throws -> Double {
        var v = x
        var out = 0.0
        try Communicator.check("MPI_Allreduce", MPI_Allreduce(&v, &out, 1, loom_mpi_double(), loom_mpi_max(), comm))
        return out
    }

    static func check(_ call: String, _ code: Int32) throws {
        if code != MPI_SUCCESS { throw DistributedError.mpi(call: call, code: code) }
    }

    /// The MPI library's own version string (callable before MPI_Init).
    public static var libraryVersion: String {
        var buf = [CChar](repeating: 0, count: Int(loom_mpi_max_library_version_string()))
        var len: Int32 = 0
        MPI_Get_library_version(&buf, &len)
        return String(cString: buf).split(separator: "\n").first.map(String.init) ?? ""
    }
}

/// A started non-blocking collective.
public struct PendingCollective {
    var request: MPI_Request?

    /// Blocks until the collective has finished.
    public mutating func wait() throws {
        try Communicator.check("MPI_Wait", MPI_Wait(&request, loom_mpi_status_ignore()))
    }

    /// Lets MPI make progress; true once finished.
    public mutating func test() throws -> Bool {
        var done: Int32 = 0
        try Communicator.check("MPI_Test", MPI_Test(&request, &done, loom_mpi_status_ignore()))
        return done != 0
    }
}
