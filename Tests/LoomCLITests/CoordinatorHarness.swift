import Foundation
import LoomStorage
import Testing

/// Starting `loom train` in the background, watching its run folder, and reading what it wrote.
enum Harness {
    /// A `loom train` (or any) process writing its merged output to a file.
    final class Background {
        let process = Process()
        let logPath: String

        init(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:],
             directory: String? = nil) throws {
            logPath = log
            FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            process.environment = env
            if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }

        /// Waits up to `seconds`; SIGKILLs it and fails the test when it does not end.
        func wait(seconds: Double) -> Int32 {
            let end = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < end { usleep(50_000) }
            if process.isRunning {
                Issue.record("\(process.arguments?.prefix(2) ?? []) still running after \(seconds) s; killed. Output:\n\(output)")
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            return process.terminationStatus
        }

        var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    }

    /// Polls `condition` every 50 ms for up to `seconds`.
    @discardableResult
    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    /// (step, pid) from `RUN/heartbeat/rank-K`.
    static func heartbeat(_ run: String, rank: Int) -> (step: Int, pid: Int32)? {
        guard let text = try? String(contentsOfFile: "\(run)/heartbeat/rank-\(rank)", encoding: .utf8) else { return nil }
        let f = text.split(separator: " ")
        guard f.count >= 2, let s = Int(f[0]), let p = Int32(f[1]) else { return nil }
        return (s, p)
    }

    /// The objects of `RUN/events.jsonl`.
    static func events(_ run: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: run + "/events.jsonl", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func events(_ run: String, named name: String) -> [[String: Any]] {
        events(run).filter { $0["event"] as? String == name }
    }

    /// Whether a pid still runs (a zombie does not).
    static func alive(_ pid: Int32) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return false }
        let state = text[text.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// The tiny conditional U-Net of the training tests, with dropout so the random streams matter.
    static func tiny(_ folder: String, steps: Int, extra: [String] = []) -> [String] {
        TrainingTests.tiny(folder, steps: steps, extra: ["model.dropout=0.1", "checkpoint.every=50",
                                                         "train.check_replicas_every=0"] + extra)
    }

    static let config = TrainingTests.configs + "/ddpm-fashion.yaml"

    /// `loom train` in the background on a tiny run.
    static func train(_ folder: String, run: String, steps: Int, extra: [String] = [], options: [String] = ["--nproc", "2"],
                      environment: [String: String] = [:], log: String) throws -> Background {
        try Background(LoomBinary.path, ["train", config] + tiny(folder, steps: steps, extra: extra) + options + ["--run-dir", run],
                       log: log, environment: environment)
    }

    /// An uninterrupted 2-rank run of the same config (the bitwise reference), its final state.
    static func reference(_ folder: String, steps: Int) throws -> CheckpointState {
        let run = folder + "/reference"
        let r = try LoomBinary.mpirun(ranks: 2, ["worker", config] + tiny(folder, steps: steps) + ["--run-dir", run])
        #expect(r.status == 0, "\(r.stderr)")
        return try CheckpointStore.read(run + "/checkpoints/latest")
    }

    /// Bitwise comparison of two final states; the coordinator keys in the stored config may differ.
    static func expectBitwiseEqual(_ a: CheckpointState, _ b: CheckpointState, _ what: String) {
        var b = b
        b.configYAML = a.configYAML
        let difference = a.bitwiseDifference(from: b)
        #expect(difference == nil, "\(what): \(difference ?? "")")
    }

    /// Seconds as text for the measurements the tests print.
    static func seconds(_ x: Double) -> String { String(format: "%.2f s", x) }

    /// Runs a shell harness (cluster/test/…), failing the test on a non-zero exit. Spawned and
    /// waited for by pid (not Foundation's Process: its exit notice was lost once the script
    /// had started daemons, and waitUntilExit hung), its output through a file.
    @discardableResult
    static func shell(_ script: String, _ args: [String], environment: [String: String] = [:], check: Bool = true) throws -> LoomBinary.Result {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("loom-harness-\(UUID().uuidString.prefix(8)).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let argv = (["/bin/bash", repository + "/" + script] + args).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/bash", &actions, nil, argv, envp)
        posix_spawn_file_actions_destroy(&actions)
        guard rc == 0 else { throw CocoaError(.executableLoad) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        if check { #expect(code == 0, "\(script) \(args): \(out)") }
        return LoomBinary.Result(status: code, stdout: out, stderr: "")
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
}
