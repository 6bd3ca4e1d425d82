import Foundation

/// The folder a run writes into:
/// `RUN/config.yaml`, `RUN/metrics.jsonl`, `RUN/checkpoints/*.h5` (+ `latest`), `RUN/samples/`.
public struct RunDirectory {
    public let root: URL

    public init(_ path: String) { root = URL(fileURLWithPath: path).standardizedFileURL }

    public var checkpoints: URL { root.appendingPathComponent("checkpoints") }
    public var samples: URL { root.appendingPathComponent("samples") }
    public var metrics: URL { root.appendingPathComponent("metrics.jsonl") }
    public var config: URL { root.appendingPathComponent("config.yaml") }
    /// TensorBoard event files (`tensorboard --logdir RUN/tensorboard`).
    public var tensorboard: URL { root.appendingPathComponent("tensorboard") }

    /// Creates the folders (rank 0 only).
    public func create() throws {
        for dir in [root, checkpoints, samples] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
    }
}

/// Appends one JSON object per line to `metrics.jsonl` (rank 0), flushed per line so a
/// killed run keeps everything it logged.
public final class MetricsLog {
    private let handle: FileHandle

    public init(_ url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil)
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
    }

    /// Writes `fields` as one JSON line (keys sorted, numbers as JSON numbers).
    public func append(_ fields: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        try handle.write(contentsOf: data + Data("\n".utf8))
    }

    deinit { try? handle.close() }
}

/// Images per second and time left, from a moving window of step times.
public struct Throughput {
    private var window: [(step: Int, time: Double)] = []
    private let size: Int

    public init(window: Int = 20) { size = window }

    /// Records that `step` finished at `time` (seconds).
    public mutating func record(step: Int, time: Double) {
        window.append((step, time))
        if window.count > size { window.removeFirst() }
    }

    /// Seconds per step over the window (nil until two steps are recorded).
    public var secondsPerStep: Double? {
        guard let first = window.first, let last = window.last, last.step > first.step else { return nil }
        return (last.time - first.time) / Double(last.step - first.step)
    }

    /// "1h02m" style duration.
    public static func format(seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
        if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return "\(s)s"
    }
}
