import Foundation
import LoomTraining

/// A mistake in `loom train`'s arguments, found before anything is launched.
public enum CoordinatorError: Error, CustomStringConvertible, Equatable {
    case badOption(name: String, value: String, expected: String)
    case hostfile(path: String, reason: String)
    case launcherMissing(launcher: String, hint: String)
    case spawn(command: String, reason: String)

    public var description: String {
        switch self {
        case let .badOption(name, value, expected): return "\(name) \(value): expected \(expected)"
        case let .hostfile(path, reason): return "\(path): \(reason)"
        case let .launcherMissing(launcher, hint): return "launcher '\(launcher)' cannot be used: \(hint)"
        case let .spawn(command, reason): return "cannot start \(command): \(reason)"
        }
    }
}

/// Which program starts the workers.
public enum Launcher: String, CaseIterable, Sendable {
    /// `mpirun` (Open MPI), on this machine or on the hosts of a hostfile.
    case mpirun
    /// `srun` inside a Slurm allocation (Open MPI through PMIx).
    case srun
}

/// One host of an Open MPI hostfile (`node0 slots=2`).
public struct HostEntry: Equatable, Sendable {
    public var name: String
    public var slots: Int?

    /// A host with an optional slot count.
    public init(name: String, slots: Int?) { self.name = name; self.slots = slots }

    /// Parses a hostfile's text: one host per line, `#` comments, optional `slots=N`;
    /// throws when a line is malformed or no line names a host.
    public static func parse(hostfile text: String, path: String) throws -> [HostEntry] {
        var hosts: [HostEntry] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let name = fields.first else { continue }
            var entry = HostEntry(name: String(name), slots: nil)
            for f in fields.dropFirst() {
                let kv = f.split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0] == "slots" || kv[0] == "max_slots" || kv[0] == "max-slots" {
                    guard let n = Int(kv[1]), n > 0 else {
                        throw CoordinatorError.hostfile(path: path, reason: "line \(i + 1): '\(f)' must be a positive slot count")
                    }
                    if kv[0] == "slots" { entry.slots = n }
                } else {
                    throw CoordinatorError.hostfile(path: path, reason: "line \(i + 1): unknown field '\(f)' (expected 'HOST [slots=N]')")
                }
            }
            hosts.append(entry)
        }
        if hosts.isEmpty { throw CoordinatorError.hostfile(path: path, reason: "names no hosts (expected lines like 'node0 slots=2')") }
        return hosts
    }
}

/// What `loom train` was asked to run, checked, and turned into one launcher command.
public struct LaunchPlan {
    public var configPath: String
    public var overrides: [String]
    public var config: RunConfig
    public var nproc: Int
    public var launcher: Launcher
    public var hostfile: String?
    public var runDir: String
    /// Extra `--mca key value` pairs for mpirun.
    public var mca: [(String, String)] = []
    public var bindTo: String?
    public var mapBy: String?
    public var oversubscribe = false
    /// The `loom` executable the workers run.
    public var loomPath: String

    /// Checks the arguments, the config and the data set; throws the first problem as one line.
    public init(config configPath: String, overrides: [String], nproc: Int, launcher: String, hostfile: String?,
                runDir: String?, mca: [String], bindTo: String?, mapBy: String?, oversubscribe: Bool,
                loomPath: String) throws {
        guard let l = Launcher(rawValue: launcher) else {
            throw CoordinatorError.badOption(name: "--launcher", value: "'\(launcher)'",
                                             expected: "one of \(Launcher.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard nproc >= 1 else { throw CoordinatorError.badOption(name: "--nproc", value: "\(nproc)", expected: "at least 1 worker") }
        self.configPath = configPath
        self.overrides = overrides
        self.nproc = nproc
        self.launcher = l
        self.hostfile = hostfile
        self.bindTo = bindTo
        self.mapBy = mapBy
        self.oversubscribe = oversubscribe
        self.loomPath = loomPath
        for m in mca {
            let kv = m.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty else {
                throw CoordinatorError.badOption(name: "--mca", value: "'\(m)'", expected: "key=value (e.g. btl=self,tcp)")
            }
            self.mca.append((kv[0], kv[1]))
        }
        if let hostfile {
            guard l == .mpirun else { throw CoordinatorError.badOption(name: "--hostfile", value: hostfile, expected: "only with --launcher mpirun (srun takes the hosts of its allocation)") }
            guard let text = try? String(contentsOfFile: hostfile, encoding: .utf8) else {
                throw CoordinatorError.hostfile(path: hostfile, reason: "cannot read the hostfile")
            }
            _ = try HostEntry.parse(hostfile: text, path: hostfile)
        }
        config = try RunConfig.load(file: configPath, overrides: overrides)
        _ = try Trainer.openDataset(config)
        self.runDir = runDir ?? "runs/" + URL(fileURLWithPath: configPath).deletingPathExtension().lastPathComponent
        guard Self.which(l.rawValue) != nil else {
            throw CoordinatorError.launcherMissing(launcher: l.rawValue, hint: l == .mpirun
                ? "mpirun is not on PATH (install openmpi-bin)" : "srun is not on PATH (install slurm-client)")
        }
        if l == .srun && ProcessInfo.processInfo.environment["SLURM_JOB_ID"] == nil {
            throw CoordinatorError.launcherMissing(launcher: "srun", hint: "no Slurm allocation (SLURM_JOB_ID is unset; submit cluster/slurm/train.sbatch)")
        }
    }

    /// Environment variables the workers inherit and the launch record lists.
    public var workerEnvironment: [(String, String)] {
        let t = "\(config.threads)"
        var env: [(String, String)] = [("OPENBLAS_NUM_THREADS", t), ("OMP_NUM_THREADS", t)]
        let inherited = ProcessInfo.processInfo.environment
        for key in inherited.keys.sorted() where key.hasPrefix("OMPI_MCA_") || key.hasPrefix("PMIX_MCA_")
            || key == "OPENBLAS_CORETYPE" || key == "LOOM_KEEP_OPENBLAS_CORETYPE" || key.hasPrefix("LOOM_TEST_") {
            env.append((key, inherited[key]!))
        }
        return env
    }

    /// The worker command after the launcher's own arguments.
    var workerArguments: [String] {
        [loomPath, "worker", configPath] + overrides + ["--run-dir", runDir, "--resume", "auto"]
    }

    /// The full launcher command line.
    public var command: [String] {
        switch launcher {
        case .mpirun:
            var a = ["mpirun"]
            if geteuid() == 0 { a.append("--allow-run-as-root") }
            a += ["-np", "\(nproc)", "--tag-output"]
            if let hostfile { a += ["--hostfile", hostfile] }
            if oversubscribe { a.append("--oversubscribe") }
            if let bindTo { a += ["--bind-to", bindTo] }
            if let mapBy { a += ["--map-by", mapBy] }
            for (k, v) in mca { a += ["--mca", k, v] }
            for (k, _) in workerEnvironment { a += ["-x", k] }
            return a + workerArguments
        case .srun:
            return ["srun", "--label", "--kill-on-bad-exit=1", "--ntasks", "\(nproc)"] + workerArguments
        }
    }

    /// `RUN/launch.sh`: the command and environment, runnable by hand.
    public var launchScript: String {
        func quote(_ s: String) -> String {
            s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,@+".contains($0) }) ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }
        var lines = ["#!/bin/sh", "# Written by loom train at \(ISO8601DateFormatter().string(from: Date())); the workers of this run were started so.",
                     "cd \(quote(FileManager.default.currentDirectoryPath))"]
        for (k, v) in workerEnvironment { lines.append("export \(k)=\(quote(v))") }
        for key in ["SLURM_JOB_ID", "SLURM_RESTART_COUNT", "SLURM_NTASKS", "SLURM_JOB_NODELIST"] {
            if let v = ProcessInfo.processInfo.environment[key] { lines.append("# \(key)=\(v)") }
        }
        lines.append(command.map(quote).joined(separator: " "))
        return lines.joined(separator: "\n") + "\n"
    }

    static func which(_ name: String) -> String? {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
