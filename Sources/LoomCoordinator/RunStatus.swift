import Foundation
import LoomStorage
import LoomTraining

/// A run's state read from its files alone (`loom status RUN`).
public struct RunStatus {
    public var step: Int?
    public var maxSteps: Int?
    public var imagesPerSecond: Double?
    public var secondsPerStep: Double?
    public var newestCheckpoint: String?
    public var restarts = 0
    public var lastEvent: String?
    public var coordinatorPID: Int?
    public var coordinatorAlive = false

    /// Reads `RUN/metrics.jsonl`, `config.yaml`, `checkpoints/`, `events.jsonl`, `heartbeat/`
    /// and `coordinator.json`; throws when `path` is not a run folder.
    public init(path: String) throws {
        let run = RunDirectory(path)
        let fm = FileManager.default
        guard fm.fileExists(atPath: run.config.path) || fm.fileExists(atPath: run.events.path) else {
            throw StorageError.missing(path: path, hint: "not a run folder (no config.yaml or events.jsonl)")
        }
        maxSteps = (try? RunConfig.load(file: run.config.path))?.train.maxSteps
        let rows = RunFiles.metricRows(run)
        if let last = rows.last {
            step = last["step"] as? Int
            imagesPerSecond = last["images_per_s"] as? Double
        }
        if rows.count >= 2, let s1 = rows[rows.count - 1]["step"] as? Int, let s0 = rows[rows.count - 2]["step"] as? Int,
           let t1 = rows[rows.count - 1]["time"] as? Double, let t0 = rows[rows.count - 2]["time"] as? Double, s1 > s0, t1 > t0 {
            secondsPerStep = (t1 - t0) / Double(s1 - s0)
        }
        for rank in 0..<1024 {
            guard let text = try? String(contentsOf: run.heartbeat(rank: rank), encoding: .utf8) else { break }
            if let r = HeartbeatRecord(text: text), r.step > (step ?? -1) { step = r.step }
        }
        if let store = try? CheckpointStore(folder: run.checkpoints) { newestCheckpoint = store.latest()?.path }
        let events = RunFiles.jsonLines(run.events)
        restarts = events.filter { $0["event"] as? String == "restart" }.count
        lastEvent = events.last.map { e in
            "\(e["event"] as? String ?? "?") at \(e["time"] as? String ?? "?")" + ((e["reason"] as? String).map { " (\($0))" } ?? "")
        }
        if let data = fm.contents(atPath: run.coordinatorInfo.path),
           let info = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let pid = info["pid"] as? Int {
            coordinatorPID = pid
            let sameHost = (info["host"] as? String) == Attempt.hostName
            let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            coordinatorAlive = sameHost && ProcessTable.alive(pid_t(pid), start: nil) && cmdline.contains("loom")
        }
    }

    /// The report, one fact per line.
    public var text: String {
        var lines: [String] = []
        let progress = step.map { s in maxSteps.map { "\(s)/\($0)" } ?? "\(s)" } ?? "not started"
        lines.append("step: \(progress)")
        lines.append("rate: " + (imagesPerSecond.map { String(format: "%.1f images/s", $0) } ?? "unknown"))
        if let s = step, let m = maxSteps, let sps = secondsPerStep {
            lines.append("eta: " + (s >= m ? "done" : Throughput.format(seconds: sps * Double(m - s))))
        } else {
            lines.append("eta: " + (step != nil && step == maxSteps ? "done" : "unknown"))
        }
        lines.append("newest checkpoint: \(newestCheckpoint ?? "none")")
        lines.append("restarts: \(restarts)")
        if let lastEvent { lines.append("last event: \(lastEvent)") }
        lines.append("coordinator: " + (coordinatorPID.map { "pid \($0) " + (coordinatorAlive ? "alive" : "not running") } ?? "none recorded"))
        return lines.joined(separator: "\n")
    }
}
