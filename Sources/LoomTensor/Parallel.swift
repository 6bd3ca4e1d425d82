import Foundation

/// How Loom splits its own loops (elementwise, normalisation, reductions) across cores.
/// BLAS and oneDNN have their own thread pools, set together through `setThreads`.
public enum Parallel {
    /// Threads for Loom's own loops; 1 runs every loop inline with no threading overhead.
    public nonisolated(unsafe) private(set) static var threads = 1

    /// Sets Loom's, OpenBLAS's and oneDNN's (OpenMP) thread counts together.
    public static func setThreads(_ n: Int) {
        threads = max(1, n)
        NativeThreads.set(threads)
    }

    /// Runs `body` over `0..<count` in contiguous chunks, on `threads` threads when the work
    /// is large enough (`count >= 2 * grain`), else inline.
    @inline(__always)
    public static func forRange(_ count: Int, grain: Int = 4096, _ body: (Range<Int>) -> Void) {
        let t = threads
        if t == 1 || count < 2 * grain { body(0..<count); return }
        let chunks = min(t, count / grain)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            body((count * c / chunks)..<(count * (c + 1) / chunks))
        }
    }
}
