import Foundation

/// How Loom splits its work across cores: its own loops (elementwise, normalisation,
/// reductions), GEMMs and convolutions (shares of the batch). OpenBLAS and oneDNN run
/// single-threaded inside each share (see `NativeThreads`).
public enum Parallel {
    /// Threads for Loom's own loops; 1 runs every loop inline with no threading overhead.
    public nonisolated(unsafe) private(set) static var threads = 1

    /// Sets Loom's thread count (and keeps OpenBLAS and oneDNN single-threaded).
    public static func setThreads(_ n: Int) {
        threads = max(1, n)
        NativeThreads.keepSingleThreaded()
    }

    private static let exclusive = NSRecursiveLock()

    /// Runs `body` with `n` threads and restores the count after. Callers of `withThreads`
    /// take turns (a process-wide lock), so code that compares results at different thread
    /// counts, e.g. tests running concurrently, really runs at the count it asked for.
    public static func withThreads<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        exclusive.lock()
        defer { exclusive.unlock() }
        let saved = threads
        setThreads(n)
        defer { setThreads(saved) }
        return try body()
    }

    /// Runs `body` over `0..<count` in contiguous chunks, on `threads` threads when the work
    /// is large enough (`count >= 2 * grain`), else inline.
    @inline(__always)
    public static func forRange(_ count: Int, grain: Int = 4096, _ body: (Range<Int>) -> Void) {
        let t = threads
        if t == 1 || count < 2 * grain { body(0..<count); return }
        let chunks = min(t, count / grain)
        WorkerPool.shared.run(chunks: chunks, threads: t) { c in
            body((count * c / chunks)..<(count * (c + 1) / chunks))
        }
    }
}
