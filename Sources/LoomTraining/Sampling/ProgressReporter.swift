import Foundation

/// A progress line on stderr for long loops (sampling, feature extraction, encoding):
/// `sample: 1200/10000 images (12%)  35.2 images/s  ETA 4m10s`. On a terminal the line is
/// rewritten in place a few times a second; otherwise a line is printed every `interval`
/// seconds. Silent when `enabled` is false (`--quiet`, ranks other than 0).
public final class ProgressReporter {
    let label: String
    let unit: String
    public private(set) var total: Int
    public private(set) var done = 0
    let enabled: Bool
    let terminal: Bool
    let interval: Double
    let started = Date()
    var lastPrint = -Double.infinity
    let write: (String) -> Void

    /// A reporter of `total` `unit`s; `scale` multiplies what `advance` is told (a rank that
    /// does 1/N of the work reports the whole run's estimate).
    public init(label: String, total: Int, unit: String = "images", enabled: Bool = true,
                interval: Double? = nil, write: ((String) -> Void)? = nil) {
        self.label = label
        self.total = total
        self.unit = unit
        self.enabled = enabled
        terminal = write == nil && isatty(2) != 0
        self.interval = interval ?? (terminal ? 0.25 : 10)
        self.write = write ?? { FileHandle.standardError.write(Data($0.utf8)) }
    }

    /// The line for `done` of `total` after `seconds`.
    public static func line(label: String, done: Int, total: Int, unit: String, seconds: Double) -> String {
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let percent = total > 0 ? 100 * done / total : 100
        var text = "\(label): \(done)/\(total) \(unit) (\(percent)%)"
        if done > 0 && seconds > 0 {
            text += String(format: "  %.1f %@/s", rate, unit)
            text += done < total ? "  ETA " + Throughput.format(seconds: Double(total - done) / rate)
                                 : "  in " + Throughput.format(seconds: seconds)
        }
        return text
    }

    /// Counts `n` more units done, printing when the interval has passed.
    public func advance(by n: Int) {
        done = min(total, done + n)
        guard enabled else { return }
        let now = Date().timeIntervalSince(started)
        if now - lastPrint >= interval && done < total {
            lastPrint = now
            emit(now)
        }
    }

    /// Prints the final line (all done, total time), unless the work was too quick to have
    /// printed anything before (under 2 s): a quick command's stderr stays empty.
    public func finish() {
        guard enabled else { return }
        done = total
        let now = Date().timeIntervalSince(started)
        if lastPrint > -Double.infinity || now >= 2 { emit(now, final: true) }
    }

    func emit(_ seconds: Double, final: Bool = false) {
        let text = Self.line(label: label, done: done, total: total, unit: unit, seconds: seconds)
        write(terminal ? "\r\u{1B}[K" + text + (final ? "\n" : "") : text + "\n")
    }
}
