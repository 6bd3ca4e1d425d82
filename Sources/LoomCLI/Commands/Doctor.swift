import ArgumentParser
import Foundation
import LoomDistributed
import LoomStorage
import LoomTensor

/// `loom doctor`: what Loom linked and loaded, and whether the machine is ready.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the native libraries Loom loaded, measure sgemm, and check the tools it needs.")

    @Flag(help: "Run under mpirun: every rank answers and the ranks' ids are all-reduced.")
    var mpi = false

    @Flag(help: "Skip the sgemm measurement.")
    var noBench = false

    func run() throws {
        var communicator: Communicator?
        if mpi { communicator = try Communicator.world() }
        let rank = communicator?.rank ?? 0
        var missing: [String] = []

        if rank == 0 {
            missing = report()
        }
        if let c = communicator {
            try c.barrier()
            let host = ProcessInfo.processInfo.hostName
            print("rank \(c.rank) of \(c.size) (local \(c.localRank) of \(c.localSize)) on \(host): ok, "
                  + "openblas \(TensorNative.blasCoreName)")
            fflush(stdout)
            var ids = [Double(c.rank)]
            try c.allReduceSum(&ids)
            let expected = Double(c.size * (c.size - 1) / 2)
            try c.barrier()
            if rank == 0 {
                print("all-reduce of rank ids over \(c.size) ranks: \(Int(ids[0])) (expected \(Int(expected)))")
            }
            if ids[0] != expected {
                throw ValidationError("all-reduce gave \(ids[0]), expected \(expected): the ranks do not agree")
            }
        }
        if !missing.isEmpty {
            for m in missing { FileHandle.standardError.write(Data("loom doctor: missing: \(m)\n".utf8)) }
            throw ExitCode(1)
        }
    }

    /// Prints the report and returns what is missing.
    func report() -> [String] {
        var missing: [String] = []
        func row(_ name: String, _ value: String) { print(name.padding(toLength: 10, withPad: " ", startingAt: 0) + value) }
        print("loom \(LoomCommand.version)")
        row("swift", "\(swiftCompilerVersion) (compiler that built loom)")
        row("openmpi", Communicator.libraryVersion)
        if which("mpirun") == nil { missing.append("mpirun is not on PATH (Debian package openmpi-bin; scripts/setup installs it)") }

        let core = TensorNative.blasCoreName
        let threads = Parallel.threads
        row("openblas", "core \(core), single-threaded per call (Loom splits products over its threads); \(TensorNative.blasConfig)")
        if let best = BLASKernel.strongestForThisCPU(), BLASKernel.upgrade(requested: core, strongest: best) != nil {
            row("", "warning: this CPU runs the \(best) kernel; \(core) is slower (OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset"))")
        }
        if !noBench {
            // One thread: the per-core figure every speed goal in Loom is measured against.
            Parallel.setThreads(1)
            let gflops = TensorNative.measureSgemm(n: 2048, repeats: 3)
            Parallel.setThreads(threads)
            row("", String(format: "sgemm 2048³ at 1 thread: %.1f GFLOP/s", gflops))
        }
        row("onednn", "\(TensorNative.dnnlVersion), ISA \(TensorNative.dnnlISA)")
        row("hdf5", StorageNative.hdf5Version)
        if which("h5dump") == nil { missing.append("h5dump is not on PATH (Debian package hdf5-tools; scripts/setup installs it)") }
        row("libpng", "\(StorageNative.pngVersion) (built against \(StorageNative.pngHeaderVersion))")
        row("zlib", StorageNative.zlibVersion)
        let fashion = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
        row("data", FileManager.default.fileExists(atPath: fashion)
            ? "Fashion-MNIST found in /usr/share/datasets/fashion-mnist"
            : "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
        fflush(stdout)
        return missing
    }
}

/// The first executable named `name` on PATH.
func which(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// The Swift compiler version, fixed at build time.
let swiftCompilerVersion: String = {
    #if compiler(>=6.5)
    return "6.5 or newer"
    #elseif compiler(>=6.4)
    return "6.4"
    #elseif compiler(>=6.3.2)
    return "6.3.2"
    #elseif compiler(>=6.3.1)
    return "6.3.1"
    #elseif compiler(>=6.3)
    return "6.3"
    #elseif compiler(>=6.2)
    return "6.2"
    #else
    return "older than 6.2"
    #endif
}()
