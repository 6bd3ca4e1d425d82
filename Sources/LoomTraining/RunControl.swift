import Foundation
import LoomDistributed

/// Exit statuses shared by `loom worker` and `loom train`.
public enum RunExit {
    /// Stopped on request (SIGTERM, SIGUSR1 or `RUN/control/stop`) after a checkpoint at a
    /// step boundary every rank agreed on: a batch script turns this into a requeue.
    public static let requeue: Int32 = 75
}

extension RunDirectory {
    /// `RUN/heartbeat/`: one small file per rank, rewritten after every step.
    public var heartbeats: URL { root.appendingPathComponent("heartbeat") }
    /// `RUN/heartbeat/rank-K`.
    public func heartbeat(rank: Int) -> URL { heartbeats.appendingPathComponent("rank-\(rank)") }
    /// `RUN/control/`: requests from the coordinator to the workers.
    public var control: URL { root.appendingPathComponent("control") }
    /// `RUN/control/stop`: when present, the workers checkpoint at the next step and exit 75.
    public var stopRequest: URL { control.appendingPathComponent("stop") }
    /// `RUN/logs/`: every rank's output (`rank-K.log`) as the coordinator captured it.
    public var logs: URL { root.appendingPathComponent("logs") }
    /// `RUN/events.jsonl`: the coordinator's starts, restarts, preemptions and end.
    public var events: URL { root.appendingPathComponent("events.jsonl") }
    /// `RUN/coordinator.json`: pid, host and start time of the coordinator that owns the run.
    public var coordinatorInfo: URL { root.appendingPathComponent("coordinator.json") }
    /// `RUN/launch.sh`: the exact launch command and the environment that matters.
    public var launchScript: URL { root.appendingPathComponent("launch.sh") }
}

/// What one rank reports in its heartbeat file: `step pid host`.
public struct HeartbeatRecord: Equatable, Sendable {
    public var step: Int
    public var pid: Int32
    public var host: String

    /// Parses the file's text; nil when it is empty or malformed (a write in progress).
    public init?(text: String) {
        let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard f.count >= 3, let s = Int(f[0]), let p = Int32(f[1]) else { return nil }
        step = s; pid = p; host = String(f[2])
    }
}

/// The worker's side of supervision: the per-rank heartbeat, the stop request every rank
/// agrees on, and the test-only hang hook.
final class RunControl {
    /// Test hook (not user-facing): rank `LOOM_TEST_HANG_RANK` (default 1) stops making
    /// progress after this step, once per run folder.
    static let hangAtStepVariable = "LOOM_TEST_HANG_AT_STEP"
    static let hangRankVariable = "LOOM_TEST_HANG_RANK"

    let run: RunDirectory
    let rank: Int
    private var fd: Int32 = -1
    private let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"

    init(run: RunDirectory, rank: Int) {
        self.run = run
        self.rank = rank
        StopSignal.install()
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Rewrites `RUN/heartbeat/rank-K` with `step pid host` (one pwrite of a fixed-width line).
    func beat(step: Int) {
        if fd < 0 {
            try? FileManager.default.createDirectory(at: run.heartbeats, withIntermediateDirectories: true)
            fd = open(run.heartbeat(rank: rank).path, O_WRONLY | O_CREAT, 0o644)
            if fd < 0 { return }
        }
        var line = "\(step) \(getpid()) \(host)"
        line = line.padding(toLength: max(63, line.count), withPad: " ", startingAt: 0) + "\n"
        _ = line.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    /// Collective, once per step: true on every rank when any rank got SIGTERM/SIGUSR1 or
    /// rank 0 sees `RUN/control/stop`, so all ranks stop at the same step boundary.
    func stopRequested(_ comm: Communicator) throws -> Bool {
        var flag = StopSignal.received ? 1.0 : 0.0
        if rank == 0 && FileManager.default.fileExists(atPath: run.stopRequest.path) { flag = 1 }
        if comm.size == 1 { return flag > 0 }
        return try comm.allReduceMax(flag) > 0
    }

    /// The test-only hang: sleeps for good after `step` on the chosen rank, the first time only.
    func hangIfAsked(step: Int) {
        let env = ProcessInfo.processInfo.environment
        guard let text = env[Self.hangAtStepVariable], Int(text) == step,
              rank == Int(env[Self.hangRankVariable] ?? "1") else { return }
        let marker = run.root.appendingPathComponent(".test-hang-done").path
        if FileManager.default.fileExists(atPath: marker) { return }
        _ = FileManager.default.createFile(atPath: marker, contents: Data("\(step)\n".utf8))
        FileHandle.standardError.write(Data("hang test hook: rank \(rank) stops making progress after step \(step)\n".utf8))
        while true { sleep(1000) }
    }
}

/// SIGTERM and SIGUSR1 in a worker: remembered, answered at the next step boundary.
enum StopSignal {
    private static let flag: UnsafeMutablePointer<sig_atomic_t> = {
        let p = UnsafeMutablePointer<sig_atomic_t>.allocate(capacity: 1)
        p.pointee = 0
        return p
    }()
    private static var installed = false

    /// Whether a stop signal arrived.
    static var received: Bool { flag.pointee != 0 }

    static func install() {
        if installed { return }
        installed = true
        _ = flag  // initialised before any handler can run
        for s in [SIGTERM, SIGUSR1] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in StopSignal.flag.pointee = 1 }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(s, &action, nil)
        }
    }
}
