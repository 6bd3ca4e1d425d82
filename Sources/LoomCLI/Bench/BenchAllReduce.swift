import ArgumentParser
import Foundation
import LoomDistributed

/// `loom bench allreduce`: all-reduce bus bandwidth, raw MPI next to Loom's wrappers.
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "All-reduce bus bandwidth for 4 KB … 256 MB (run under mpirun; add --mca btl self,tcp for TCP).",
        discussion: """
            Three columns: a raw MPI_Allreduce, Loom's Communicator.allReduceSum, and the \
            GradientReducer's synchronize() of one parameter whose gradient backward has just \
            written into its bucket view (the bucket bookkeeping, the all-reduce and the \
            averaging: what a training step pays in the reducer; backward's write of the \
            gradient, which replaces the copy it makes without data parallelism, is not timed). \
            Each operation starts after a barrier and is timed alone; the columns take turns in \
            --rounds rounds and each keeps its best round (slowest rank's mean time).
            """)

    @Option(help: "Largest message in MB.")
    var maxMB = 256

    @Option(help: "Seconds to spend per size and variant (roughly).")
    var seconds = 0.3

    @Option(help: "Rounds in which the three variants take turns (each keeps its best).")
    var rounds = 5

    func validate() throws {
        try OptionError.check("--max-mb", maxMB, in: 1...4096)
        try OptionError.check("--seconds", seconds, in: 0.001...3600)
        try OptionError.check("--rounds", rounds, in: 1...1000)
    }

    func run() throws {
        let comm = try Communicator.world()
        let sizes = AllReduceBenchmark.defaultSizes.filter { $0 <= maxMB << 20 }
        let rows = try AllReduceBenchmark.run(comm, sizes: sizes, budgetSeconds: seconds, rounds: rounds)
        guard comm.rank == 0 else { return }
        let btl = ProcessInfo.processInfo.environment["OMPI_MCA_btl"] ?? "default (shared memory between local ranks)"
        print("all-reduce over \(comm.size) ranks, btl: \(btl); bus bandwidth in GB/s (slowest rank, best of \(rounds) rounds)")
        print("     size   raw MPI_Allreduce   Communicator   GradientReducer   reducer/raw")
        for r in rows {
            let size = r.bytes >= 1 << 20 ? "\(r.bytes >> 20) MB" : "\(r.bytes >> 10) KB"
            print(size.leftPad(9) + String(format: "%20.2f %14.2f %17.2f %12.0f %%", r.rawBusGBps, r.communicatorBusGBps,
                                           r.reducerBusGBps, 100 * r.reducerBusGBps / r.rawBusGBps))
        }
    }
}

extension String {
    /// Right-aligns in a field of `width` characters.
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
