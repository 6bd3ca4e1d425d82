import Foundation
import LoomTraining

/// How one launch of the workers ended.
enum AttemptEnd: Equatable {
    /// The launcher exited 0.
    case exited
    /// The workers checkpointed and stopped on request.
    case stopped
    /// A checkpoint failed for lack of disk space.
    case diskFull(String)
    /// A worker or the launcher died (the reason says which, with the status).
    case died(String)
    /// No rank made progress for `hang_timeout` seconds.
    case hung(seconds: Double, lastStep: Int)
    /// The grace period after a stop request ran out.
    case graceExpired
}

/// One launch of the workers, watched until it ends: output demultiplexed into per-rank
/// logs, heartbeats read, worker deaths and hangs detected, leftovers killed.
final class Attempt {
    let plan: LaunchPlan
    let run: RunDirectory
    let signals: SignalWatch
    let echo: Bool
    /// Highest step any rank reported.
    private(set) var lastStep = -1
    /// When the failure was detected, when the leftovers were gone, when a stop was asked
    /// for, and when a rank first passed the start step (Unix time, seconds).
    private(set) var detectedAt: Double?
    private(set) var cleanedAt: Double?
    private(set) var stopAskedAt: Double?
    private(set) var progressAt: Double?
    /// Called once, when a rank first reports a step past the start step.
    var onProgress: ((Int) -> Void)?
    private let output = OutputSink()

    init(plan: LaunchPlan, run: RunDirectory, signals: SignalWatch, echo: Bool) {
        self.plan = plan
        self.run = run
        self.signals = signals
        self.echo = echo
    }

    /// Launches, watches and cleans up; `startStep` is the step the workers resume from.
    func run(startStep: Int, attempt: Int) throws -> AttemptEnd {
        let fm = FileManager.default
        try? fm.removeItem(at: run.heartbeats)
        try? fm.removeItem(at: run.stopRequest)
        try fm.createDirectory(at: run.heartbeats, withIntermediateDirectories: true)
        try fm.createDirectory(at: run.control, withIntermediateDirectories: true)
        try fm.createDirectory(at: run.logs, withIntermediateDirectories: true)
        try output.open(logs: run.logs, ranks: plan.nproc, attempt: attempt, echo: echo, launcher: plan.launcher)

        var env = ProcessInfo.processInfo.environment
        for (k, v) in plan.workerEnvironment { env[k] = v }
        let sink = output
        let child = try LaunchedProcess(command: plan.command, environment: env) { sink.line($0) }
        let procs = ProcessSet()
        procs.add(child.pid)
        lastStep = startStep
        var lastProgress = Date()
        var seen: [Int: HeartbeatRecord] = [:]
        var stopDeadline: Date?
        var deadSince: Date?
        var end: AttemptEnd?
        var status: Int32?

        while end == nil {
            usleep(200_000)
            procs.addDescendants(of: child.pid)
            status = child.poll()
            // Heartbeats: any change on any rank is progress.
            for rank in 0..<plan.nproc {
                guard let text = try? String(contentsOf: run.heartbeat(rank: rank), encoding: .utf8),
                      let record = HeartbeatRecord(text: text) else { continue }
                if record != seen[rank] {
                    seen[rank] = record
                    lastProgress = Date()
                    lastStep = max(lastStep, record.step)
                    if progressAt == nil && record.step > startStep {
                        progressAt = Date().timeIntervalSince1970
                        onProgress?(record.step)
                    }
                    if record.host == Attempt.hostName { procs.add(record.pid) }
                }
            }
            if signals.stopRequested && stopDeadline == nil {
                stopDeadline = Date().addingTimeInterval(plan.config.coordinator.gracePeriod)
                stopAskedAt = Date().timeIntervalSince1970
                _ = fm.createFile(atPath: run.stopRequest.path, contents: Data("\(signals.reason)\n".utf8))
                say("loom train: \(signals.reason): asking the workers to checkpoint at the next step "
                    + "(grace period \(Int(plan.config.coordinator.gracePeriod)) s)")
            }
            if let status {
                output.finish(drain: child)
                if let wall = output.diskFullLine { end = .diskFull(wall) }
                // Workers exit 75 only after a stop checkpoint (the signal may have reached them directly, as srun's do).
                else if status == RunExit.requeue { end = .stopped }
                else if status == 0 { end = .exited }
                else { end = .died("\(plan.launcher.rawValue) exited with status \(status)" + (output.firstError.map { ": \($0)" } ?? "")) }
                break
            }
            // A worker that vanished before the end: give the launcher a few seconds to report it.
            if stopDeadline == nil, lastStep < plan.config.train.maxSteps,
               seen.values.contains(where: { $0.host == Attempt.hostName && !ProcessTable.alive($0.pid, start: procs.known[$0.pid]) }) {
                if deadSince == nil { deadSince = Date(); detectedAt = Date().timeIntervalSince1970 }
                if Date().timeIntervalSince(deadSince!) > 5 {
                    let dead = seen.filter { $0.value.host == Attempt.hostName && !ProcessTable.alive($0.value.pid, start: procs.known[$0.value.pid]) }
                    end = .died("rank(s) \(dead.keys.sorted().map(String.init).joined(separator: ", ")) died and \(plan.launcher.rawValue) did not exit")
                }
            }
            // Until a rank's first heartbeat (MPI start-up, data set, resume) allow at least Attempt.startupAllowance.
            let idle = Date().timeIntervalSince(lastProgress)
            let limit = seen.isEmpty ? max(plan.config.coordinator.hangTimeout, Attempt.startupAllowance) : plan.config.coordinator.hangTimeout
            if end == nil && idle > limit { end = .hung(seconds: idle, lastStep: lastStep) }
            if end == nil, let d = stopDeadline, Date() > d { end = .graceExpired }
        }
        if detectedAt == nil { detectedAt = Date().timeIntervalSince1970 }
        // Whatever is left of the job goes, by pid: ranks can outlive mpirun by seconds.
        if plan.launcher == .srun, status == nil {
            kill(child.pid, SIGINT); usleep(300_000); kill(child.pid, SIGINT)
        }
        let left = procs.killAll(group: child.pid, seconds: 15)
        _ = child.poll()
        output.finish(drain: child)
        cleanedAt = Date().timeIntervalSince1970
        if !left.isEmpty { say("loom train: warning: processes \(left) did not exit after SIGKILL") }
        if let f = output.diskFullLine, end != .exited { return .diskFull(f) }
        return end!
    }

    func say(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Seconds an attempt may take to its first heartbeat when `hang_timeout` is shorter.
    static let startupAllowance = 120.0

    static let hostName = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
}

/// Splits the launcher's tagged output into `RUN/logs/rank-K.log` (+ `launcher.log`) and
/// passes rank 0's lines (and every rank's errors) to the terminal.
final class OutputSink: @unchecked Sendable {
    private let lock = NSLock()
    private var files: [Int: FileHandle] = [:]
    private var launcherLog: FileHandle?
    private var echo = true
    private var launcher = Launcher.mpirun
    private(set) var diskFullLine: String?
    private(set) var firstError: String?

    func open(logs: URL, ranks: Int, attempt: Int, echo: Bool, launcher: Launcher) throws {
        lock.withLock {
            self.echo = echo
            self.launcher = launcher
            diskFullLine = nil
            firstError = nil
            for k in -1..<ranks {
                let url = logs.appendingPathComponent(k < 0 ? "launcher.log" : "rank-\(k).log")
                if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
                guard let h = try? FileHandle(forWritingTo: url) else { continue }
                _ = try? h.seekToEnd()
                h.write(Data("=== attempt \(attempt) \(ISO8601DateFormatter().string(from: Date())) ===\n".utf8))
                if k < 0 { launcherLog = h } else { files[k] = h }
            }
        }
    }

    /// One line of the launcher's merged output.
    func line(_ text: String) {
        let (rank, isError, body) = OutputSink.split(text, launcher: launcher)
        lock.withLock {
            let h = rank.flatMap { files[$0] } ?? launcherLog
            h?.write(Data((body + "\n").utf8))
            if body.contains(String(cString: strerror(ENOSPC))) && diskFullLine == nil { diskFullLine = body }
            let looksLikeError = isError || rank == nil
            if looksLikeError && firstError == nil && (body.hasPrefix("loom") || body.contains("error")) { firstError = body }
            guard echo else { return }
            if rank == 0 && !isError { print(body); fflush(stdout) }
            else if rank == 0 { FileHandle.standardError.write(Data((body + "\n").utf8)) }
            else if isError, let rank { FileHandle.standardError.write(Data(("rank \(rank): " + body + "\n").utf8)) }
        }
    }

    /// Waits briefly for the last output, then flushes.
    func finish(drain child: LaunchedProcess) {
        child.drainOutput(seconds: 2)
        lock.withLock { for h in files.values { try? h.synchronize() } }
    }

    /// (rank, is it stderr, text) of a tagged line: `[1,0]<stdout>:text` (mpirun --tag-output)
    /// or `0: text` (srun --label); untagged lines have no rank.
    static func split(_ text: String, launcher: Launcher) -> (Int?, Bool, String) {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let ids = text[text.index(after: text.startIndex)..<close].split(separator: ",")
            let rest = text[text.index(after: close)...]
            if ids.count == 2, let rank = Int(ids[1]) {
                for (tag, err) in [("<stdout>:", false), ("<stderr>:", true), ("<stddiag>:", true)] where rest.hasPrefix(tag) {
                    return (rank, err, String(rest.dropFirst(tag.count)))
                }
            }
        }
        if launcher == .srun, let colon = text.firstIndex(of: ":"),
           let rank = Int(text[..<colon].trimmingCharacters(in: .whitespaces)) {
            let body = String(text[text.index(after: colon)...].dropFirst(text[text.index(after: colon)...].hasPrefix(" ") ? 1 : 0))
            let err = body.hasPrefix("loom worker:") || body.hasPrefix("loom: rank") || body.contains("error")
            return (rank, err, body)
        }
        return (nil, true, text)
    }
}
