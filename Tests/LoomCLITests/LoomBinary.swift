import Foundation

/// Runs the built `loom` executable (beside the test bundle) or `mpirun` with it.
enum LoomBinary {
    /// Path of the `loom` executable of this build configuration.
    static var path: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The test bundle lives in .build/<config>/; loom is beside it.
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("loom").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return dir.appendingPathComponent("loom").path
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        /// The child ended by a signal (a trap, SIGSEGV, SIGKILL …), not by exit.
        var signaled = false
        /// The lines of stderr.
        var stderrLines: [Substring] { stderr.split(separator: "\n") }
    }

    /// Runs `executable` with `arguments`; `environment` entries override the inherited ones.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: TimeInterval = 900) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes fully before waiting, so a chatty child never blocks on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }
        let errData = Box()
        let errReader = Thread { errData.data = err.fileHandleForReading.readDataToEndOfFile() }
        errReader.start()
        // A child that hangs is killed after `timeout` seconds (then `signaled` is true).
        let watchdog = DispatchWorkItem { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        while !errReader.isFinished { usleep(1000) }
        return Result(status: process.terminationStatus,
                      stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData.data, as: UTF8.self),
                      signaled: process.terminationReason == .uncaughtSignal)
    }

    /// Runs `loom arguments…`.
    static func loom(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 900) throws -> Result {
        try run(path, arguments, environment: environment, timeout: timeout)
    }

    /// Runs `mpirun -np ranks [mpiFlags] loom arguments…` with one BLAS/OpenMP thread per rank.
    static func mpirun(ranks: Int, mpiFlags: [String] = [], _ arguments: [String]) throws -> Result {
        guard let mpirun = which("mpirun") else { throw CocoaError(.fileNoSuchFile) }
        return try run(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)",
                                "-x", "OPENBLAS_NUM_THREADS=1", "-x", "OMP_NUM_THREADS=1"]
                       + mpiFlags + [path] + arguments)
    }

    static func which(_ name: String) -> String? {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A python3 that can import h5py, or nil. scripts/setup installs it (Debian package
    /// python3-h5py); a python3 earlier on PATH may lack it while /usr/bin/python3 has it.
    static func pythonWithH5py() throws -> String? {
        let pythons = (which("python3").map { [$0] } ?? []) + ["/usr/bin/python3"]
        for p in pythons where FileManager.default.isExecutableFile(atPath: p) {
            if try run(p, ["-c", "import h5py"]).status == 0 { return p }
        }
        return nil
    }
}
