import ArgumentParser
import Foundation
import LoomDistributed

/// `loom bench allreduce`: all-reduce bus bandwidth, raw MPI next to Loom's wrappers.
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "All-reduce bus bandwidth for 4 KB … 256 MB (run under mpirun; add --mca btl self,tcp for TCP).")

    @Option(help: "Largest message in MB.")
    var maxMB = 256

    @Option(help: "Seconds to spend per size and variant (roughly).")
    var seconds = 0.3

    func validate() throws {
        try OptionError.check("--max-mb", maxMB, in: 1...4096)
        try OptionError.check("--seconds", seconds, in: 0.001...3600)
    }

    func run() throws {
        let comm = try Communicator.world()
        let sizes = AllReduceBenchmark.defaultSizes.filter { $0 <= maxMB << 20 }
        let rows = try AllReduceBenchmark.run(comm, sizes: sizes, budgetSeconds: seconds)
        guard comm.rank == 0 else { return }
        let btl = ProcessInfo.processInfo.environment["OMPI_MCA_btl"] ?? "default (shared memory between local ranks)"
        print("all-reduce over \(comm.size) ranks, btl: \(btl); bus bandwidth in GB/s (slowest rank)")
        print("     size   raw MPI_Allreduce   Communicator   GradientReducer")
        for r in rows {
            let size = r.bytes >= 1 << 20 ? "\(r.bytes >> 20) MB" : "\(r.bytes >> 10) KB"
            print(size.leftPad(9) + String(format: "%20.2f %14.2f %17.2f", r.rawBusGBps, r.communicatorBusGBps, r.reducerBusGBps))
        }
    }
}

extension String {
    /// Right-aligns in a field of `width` characters.
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
