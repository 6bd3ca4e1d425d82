import Foundation

/// Where a training step's time goes, op by op, like a minimal `torch.profiler`.
///
/// Off by default, and then every hook is one branch. When on, a forward op is charged the
/// wall-clock time since the previous mark (ops compute first and record their tape node
/// last, so the gap is the op's own work plus the glue before it); a backward function is
/// timed around its call. Code that is not an op closes its gap with `mark(_:)` (optimizer,
/// EMA, all-reduce). Only ops on the thread that called `start()` are recorded.
public enum OpProfiler {
    /// Whether the hooks record anything (one branch for callers when off).
    public nonisolated(unsafe) private(set) static var isEnabled = false
    private nonisolated(unsafe) static var owner = pthread_self()

    /// Clears the measurements and records the calling thread's ops from now on.
    public static func start() {
        owner = pthread_self()
        isEnabled = true
        reset()
    }

    /// Stops recording; the measurements stay readable.
    public static func stop() { isEnabled = false }

    /// Whether the caller's ops are recorded.
    @inline(__always) static var recordsHere: Bool { isEnabled && pthread_equal(owner, pthread_self()) != 0 }

    /// Accumulated time and calls of one name.
    public struct Entry: Sendable {
        /// Op or region name ("conv2d", "conv2d backward", "optimizer").
        public var name: String
        /// Times it ran.
        public var calls: Int
        /// Total wall-clock seconds.
        public var seconds: Double
    }

    private nonisolated(unsafe) static var entries: [String: Entry] = [:]
    private nonisolated(unsafe) static var lastMark: UInt64 = 0
    /// Timed regions open: ops run inside a backward function belong to it, not to themselves.
    private nonisolated(unsafe) static var depth = 0

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Charges the time since the previous mark to `name` and starts a new gap.
    public static func mark(_ name: String) {
        guard recordsHere, depth == 0 else { return }
        let t = now()
        if lastMark != 0 { add(name, seconds: Double(t - lastMark) * 1e-9) }
        lastMark = t
    }

    /// Adds `seconds` to `name` without touching the gap.
    static func add(_ name: String, seconds: Double) {
        entries[name, default: Entry(name: name, calls: 0, seconds: 0)].calls += 1
        entries[name]!.seconds += seconds
    }

    /// Runs `body` and charges its time to `name`; the time is excluded from the current gap.
    @inline(__always)
    static func timed<R>(_ name: @autoclosure () -> String, _ body: () -> R) -> R {
        guard recordsHere, depth == 0 else { return body() }
        let t0 = now()
        depth += 1
        let r = body()
        depth -= 1
        let t1 = now()
        add(name(), seconds: Double(t1 - t0) * 1e-9)
        lastMark = t1
        return r
    }

    /// Forgets everything measured so far and starts a new gap.
    static func reset() {
        entries = [:]
        lastMark = isEnabled ? now() : 0
    }

    /// What was measured, the largest total first.
    public static var report: [Entry] { entries.values.sorted { $0.seconds > $1.seconds } }

    /// The report as a table, with times per step when `steps` steps were measured.
    public static func table(steps: Int, top: Int = 40) -> String {
        let all = report
        let total = all.reduce(0) { $0 + $1.seconds }
        let perStep = 1e3 / Double(max(steps, 1))
        func row(_ name: String, _ calls: String, _ seconds: Double) -> String {
            name.padding(toLength: 38, withPad: " ", startingAt: 0) + calls.leftPadded(10)
                + String(format: "%10.2f %6.1f%%", seconds * perStep, 100 * seconds / max(total, 1e-12))
        }
        var lines = ["op (forward: time since previous op)".padding(toLength: 38, withPad: " ", startingAt: 0)
                     + "calls/step".leftPadded(10) + "ms/step".leftPadded(10) + "share".leftPadded(8)]
        for e in all.prefix(top) {
            lines.append(row(e.name, String(format: "%.1f", Double(e.calls) / Double(max(steps, 1))), e.seconds))
        }
        if all.count > top {
            lines.append(row("(\(all.count - top) more)", "", all.dropFirst(top).reduce(0) { $0 + $1.seconds }))
        }
        lines.append(row("total", "", total))
        return lines.joined(separator: "\n")
    }
}

extension String {
    /// The string right-aligned in `width` columns.
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
