import Foundation
import LoomStorage
import LoomTraining

/// SIGTERM, SIGUSR1 and SIGINT to `loom train`, turned into a stop request it polls.
final class SignalWatch: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var received: String?
    private var interrupts = 0

    /// Installs the handlers (the signals no longer end the process by default).
    init() {
        for (s, name) in [(SIGTERM, "SIGTERM"), (SIGUSR1, "SIGUSR1"), (SIGINT, "SIGINT")] {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.withLock {
                    if self.received == nil { self.received = name }
                    if s == SIGINT { self.interrupts += 1 }
                }
            }
            src.resume()
            sources.append(src)
        }
    }

    /// Whether a stop was asked for.
    var stopRequested: Bool { lock.withLock { received != nil } }
    /// Which signal asked.
    var reason: String { lock.withLock { received ?? "" } }
}

/// `loom train`: launches the workers, watches them, restarts them from the newest
/// checkpoint after a death or a hang, stops them cleanly on preemption, and reports.
public final class Coordinator {
    let plan: LaunchPlan
    let run: RunDirectory
    let signals = SignalWatch()
    let events: EventLog
    public var echo = true

    /// A coordinator for a checked plan; creates the run folder and writes `launch.sh`.
    public init(plan: LaunchPlan) throws {
        self.plan = plan
        run = RunDirectory(plan.runDir)
        try run.create()
        try FileManager.default.createDirectory(at: run.logs, withIntermediateDirectories: true)
        try plan.launchScript.write(to: run.launchScript, atomically: true, encoding: .utf8)
        chmod(run.launchScript.path, 0o755)
        events = try EventLog(run.events)
    }

    /// Runs to the end; returns the exit status (0 only when `train.max_steps` was reached,
    /// `RunExit.requeue` after a preemption checkpoint).
    public func supervise() throws -> Int32 {
        let c = plan.config.coordinator
        let env = ProcessInfo.processInfo.environment
        let info: [String: Any] = ["pid": Int(getpid()), "host": Attempt.hostName,
                                   "started": ISO8601DateFormatter().string(from: Date()), "nproc": plan.nproc,
                                   "launcher": plan.launcher.rawValue]
        try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys]).write(to: run.coordinatorInfo)
        let startStep = newestCheckpointStep() ?? 0
        var startFields: [String: Any] = ["step": startStep, "nproc": plan.nproc, "launcher": plan.launcher.rawValue,
                                          "max_steps": plan.config.train.maxSteps, "pid": Int(getpid()),
                                          "at": Date().timeIntervalSince1970]
        for key in ["SLURM_JOB_ID", "SLURM_RESTART_COUNT"] { if let v = env[key] { startFields[key.lowercased()] = v } }
        events.append("start", startStep == 0 ? startFields : startFields.merging(["resumed": true]) { a, _ in a })
        say("loom train: \(plan.nproc) worker(s) via \(plan.launcher.rawValue), run \(run.root.path), from step \(startStep)"
            + (env["SLURM_RESTART_COUNT"].map { " (Slurm restart \($0))" } ?? ""))

        let wallStart = Date()
        var restarts = 0, stepsLost = 0
        var attemptNumber = 1
        var resumeStep = startStep
        while true {
            let attempt = Attempt(plan: plan, run: run, signals: signals, echo: echo)
            if attemptNumber > 1 {
                let from = resumeStep
                attempt.onProgress = { [events] step in
                    events.append("resumed", ["from_step": from, "step": step, "at": Date().timeIntervalSince1970])
                }
            }
            let end = try attempt.run(startStep: resumeStep, attempt: attemptNumber)
            let reached = newestCheckpointStep() ?? 0
            switch end {
            case .exited where reached >= plan.config.train.maxSteps:
                events.append("finished", ["step": reached, "restarts": restarts, "steps_lost": stepsLost,
                                           "wall_s": Date().timeIntervalSince(wallStart)])
                summary(from: startStep, to: reached, since: wallStart, restarts: restarts, stepsLost: stepsLost)
                return 0
            case .stopped, .graceExpired:
                let clean = end == .stopped && reached >= attempt.lastStep
                events.append("preempted", ["signal": signals.reason, "step": reached, "checkpoint_at_stop": clean,
                                            "stop_asked_at": attempt.stopAskedAt ?? 0, "stopped_at": attempt.cleanedAt ?? 0, "exit": Int(RunExit.requeue)])
                say(clean ? "loom train: checkpoint at step \(reached) written after \(signals.reason); exit \(RunExit.requeue) (requeue)"
                          : "loom train: the workers did not checkpoint within the grace period; newest checkpoint step \(reached); exit \(RunExit.requeue)")
                return RunExit.requeue
            case .diskFull(let line):
                events.append("disk_full", ["step": reached, "message": line, "last_step": attempt.lastStep])
                say("loom train: a checkpoint failed, the disk is full: \(line)")
                say("loom train: not restarting (it would run into the same wall); free space or set coordinator.on_disk_full: retry, then run loom train again")
                return 1
            default:
                if signals.stopRequested {
                    events.append("preempted", ["signal": signals.reason, "step": reached, "checkpoint_at_stop": false])
                    return RunExit.requeue
                }
                let reason: String
                switch end {
                case .hung(let s, let step): reason = String(format: "no rank made progress for %.0f s (hang_timeout %.0f s) after step %d", s, c.hangTimeout, step)
                case .died(let why): reason = why
                default: reason = "the launcher exited 0 but the newest checkpoint is step \(reached), not \(plan.config.train.maxSteps)"
                }
                let lost = max(0, attempt.lastStep - reached)
                guard restarts < c.maxRestarts else {
                    events.append("gave_up", ["reason": reason, "step": reached, "restarts": restarts])
                    say("loom train: \(reason); \(restarts) restart(s) used (coordinator.max_restarts \(c.maxRestarts)): giving up")
                    return 1
                }
                restarts += 1
                stepsLost += lost
                let delay = c.restartBackoff * pow(2, Double(restarts - 1))
                events.append("restart", ["reason": reason, "attempt": restarts, "resume_step": reached, "steps_lost": lost,
                                          "last_step": attempt.lastStep, "detected_at": attempt.detectedAt ?? 0,
                                          "cleaned_at": attempt.cleanedAt ?? 0, "backoff_s": delay])
                say("loom train: \(reason); restart \(restarts)/\(c.maxRestarts) from step \(reached) (\(lost) step(s) lost) in \(delay) s")
                let until = Date().addingTimeInterval(delay)
                while Date() < until && !signals.stopRequested { usleep(100_000) }
                if signals.stopRequested {
                    events.append("preempted", ["signal": signals.reason, "step": reached, "checkpoint_at_stop": true])
                    return RunExit.requeue
                }
                resumeStep = reached
                attemptNumber += 1
            }
        }
    }

    /// The newest checkpoint's step, from the file names (the workers verify it on resume).
    func newestCheckpointStep() -> Int? {
        guard let store = try? CheckpointStore(folder: run.checkpoints) else { return nil }
        return (try? store.list())?.last?.step
    }

    func summary(from: Int, to: Int, since: Date, restarts: Int, stepsLost: Int) {
        let wall = Date().timeIntervalSince(since)
        let rates = RunFiles.metricRows(run).filter { ($0["step"] as? Int ?? 0) > from }.compactMap { $0["images_per_s"] as? Double }.filter { $0 > 0 }
        let rate = rates.isEmpty ? 0 : rates.sorted()[rates.count / 2]  // the median logged rate
        let latest = (try? CheckpointStore.resolve(run.root.path)) ?? "(none)"
        let grid = RunFiles.newestSample(run) ?? "(none: sample.every is 0)"
        say(String(format: "loom train: done: steps %d → %d in %@ (%.1f images/s), %d restart(s), %d step(s) lost",
                   from, to, Throughput.format(seconds: wall), rate, restarts, stepsLost))
        say("loom train: final checkpoint \(latest)")
        say("loom train: sample grid \(grid)")
    }

    func say(_ line: String) { print(line); fflush(stdout) }
}

/// `RUN/events.jsonl`: one JSON object per line (`time`, `event`, details), flushed per line.
final class EventLog {
    private let handle: FileHandle
    init(_ url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
    }

    func append(_ event: String, _ fields: [String: Any]) {
        var f = fields
        f["event"] = event
        f["time"] = ISO8601DateFormatter().string(from: Date())
        guard let data = try? JSONSerialization.data(withJSONObject: f, options: [.sortedKeys]) else { return }
        try? handle.write(contentsOf: data + Data("\n".utf8))
        try? handle.synchronize()
    }
}

/// Reading a run folder's files (shared by the coordinator's summary and `loom status`).
public enum RunFiles {
    /// Every parsable line of a JSON-lines file.
    public static func jsonLines(_ url: URL) -> [[String: Any]] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The rows of `metrics.jsonl`.
    public static func metricRows(_ run: RunDirectory) -> [[String: Any]] { jsonLines(run.metrics) }

    /// The newest sample grid, if any.
    public static func newestSample(_ run: RunDirectory) -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: run.samples.path)) ?? []
        return names.filter { $0.hasSuffix(".png") }.sorted().last.map { run.samples.appendingPathComponent($0).path }
    }
}
