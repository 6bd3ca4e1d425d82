import Foundation
import LoomTensor

/// Process start-up fixes that must happen before any work.
enum Launch {
    /// Set to 1 to keep a weak OPENBLAS_CORETYPE on purpose.
    static let keepVariable = "LOOM_KEEP_OPENBLAS_CORETYPE"
    /// Marks the re-executed process so a failing upgrade cannot loop.
    static let reexecMarker = "LOOM_BLAS_REEXEC"

    /// Stops with one line when this CPU lacks instructions the binary was compiled for
    /// (a binary built on another kind of node), instead of dying with SIGILL later.
    /// `LOOM_CPUINFO` names another file to read instead of /proc/cpuinfo (for tests).
    static func ensureCPUHasBuildFeatures() {
        let path = ProcessInfo.processInfo.environment["LOOM_CPUINFO"] ?? "/proc/cpuinfo"
        guard let info = try? String(contentsOfFile: path, encoding: .utf8),
              let line = CPUFeatures.refusal(target: CPUFeatures.buildTarget,
                                             missing: CPUFeatures.missing(for: CPUFeatures.buildTarget, cpuinfo: info))
        else { return }
        FileHandle.standardError.write(Data((line + "\n").utf8))
        exit(1)
    }

    /// When OPENBLAS_CORETYPE names a kernel weaker than this CPU supports, or OpenBLAS picked
    /// a weaker one by itself (a CPU model it does not know), warns in one line and re-executes
    /// this program with the strong kernel (same pid, so mpirun is unaffected). Workers that
    /// Loom launches inherit the corrected environment.
    static func ensureStrongBLASKernel() {
        let env = ProcessInfo.processInfo.environment
        guard env[keepVariable] != "1", env[reexecMarker] == nil,
              let decision = BLASKernel.decide(variable: env["OPENBLAS_CORETYPE"], detected: TensorNative.blasCoreName,
                                               strongest: BLASKernel.strongestForThisCPU()) else { return }
        let better = decision.kernel
        let rank = env["OMPI_COMM_WORLD_RANK"] ?? env["PMI_RANK"] ?? "0"
        if rank == "0" {
            FileHandle.standardError.write(Data(("loom: \(decision.reason); using \(better) "
                + "(set \(keepVariable)=1 to keep it)\n").utf8))
        }
        setenv("OPENBLAS_CORETYPE", better, 1)
        setenv(reexecMarker, "1", 1)
        let args = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", args)
        // exec failed: carry on with the weak kernel rather than not running at all.
        FileHandle.standardError.write(Data("loom: could not restart with \(better) (\(String(cString: strerror(errno)))); continuing\n".utf8))
    }
}
