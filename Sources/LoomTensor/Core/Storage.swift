import Foundation

/// A float buffer owned by one or more tensors; its memory comes from and returns to `BufferPool`,
/// or, for a view, is a range of another storage that the view keeps alive.
public final class Storage {
    /// First element; 64-byte aligned unless this is a view at an unaligned offset.
    public let data: UnsafeMutablePointer<Float>
    /// Number of valid elements.
    public let count: Int
    let capacity: Int
    /// The storage this one views (nil when it owns its memory).
    public let base: Storage?

    /// Takes an uninitialised buffer of `count` floats from the pool.
    public init(count: Int) {
        self.count = count
        (data, capacity) = BufferPool.shared.take(count)
        base = nil
    }

    /// Elements `offset ..< offset + count` of `base`, shared (writes go to `base`), keeping
    /// `base` alive; nothing returns to the pool when the view goes away.
    public init(viewing base: Storage, offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= base.count,
                     "storage view \(offset)..<\(offset + count) outside \(base.count) elements")
        data = base.data + offset
        self.count = count
        capacity = 0
        self.base = base.base ?? base
    }

    deinit { if base == nil { BufferPool.shared.give(data, capacity: capacity) } }
}

/// A caching allocator: freed buffers are kept per size class and handed out again, so a
/// steady-state training step never returns to malloc (glibc would give large blocks back
/// to the kernel and every step would page-fault them in again).
public final class BufferPool: @unchecked Sendable {
    /// The process-wide pool every `Storage` uses.
    public static let shared = BufferPool()

    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var lock = pthread_mutex_t()
    /// Buffers obtained from the system since start (a steady state stops increasing it).
    public private(set) var systemAllocations = 0
    /// Bytes currently handed out to live storages.
    public private(set) var bytesInUse = 0
    /// Bytes held in the free lists.
    public private(set) var bytesCached = 0

    private init() { pthread_mutex_init(&lock, nil) }

    /// Size classes: multiples of 16 floats up to 4 Ki floats, then 8 steps per power of two
    /// (at most 12.5 % waste).
    static func sizeClass(_ n: Int) -> Int {
        let n = max(n, 1)
        if n <= 4096 { return (n + 15) & ~15 }
        let top = Int.bitWidth - 1 - (n - 1).leadingZeroBitCount  // floor(log2(n-1))
        let step = 1 << (top - 3)
        return ((n + step - 1) / step) * step
    }

    func take(_ n: Int) -> (UnsafeMutablePointer<Float>, Int) {
        let cap = BufferPool.sizeClass(n)
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        bytesInUse += cap * 4
        if var list = free[cap], let p = list.popLast() {
            free[cap] = list
            bytesCached -= cap * 4
            return (p, cap)
        }
        systemAllocations += 1
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, cap * 4) == 0, let raw else {
            stopWithOneLine("out of memory allocating \(cap * 4) bytes (\(bytesInUse - cap * 4) already in use); "
                            + "lower train.batch_size or the model's size, or run fewer ranks per node")
        }
        return (raw.bindMemory(to: Float.self, capacity: cap), cap)
    }

    func give(_ p: UnsafeMutablePointer<Float>, capacity: Int) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        bytesInUse -= capacity * 4
        bytesCached += capacity * 4
        free[capacity, default: []].append(p)
    }

    /// Returns every cached buffer to the system (after sampling, before a long idle phase).
    public func trim() {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        for (_, list) in free { for p in list { Foundation.free(p) } }
        free.removeAll()
        bytesCached = 0
    }
}

/// Ends the process for a condition no caller can recover from (memory exhausted, a native
/// library refusing a call): one line on stderr naming the rank, exit status 1, and no trap or
/// stack trace. Under mpirun the launcher then ends the other ranks.
public func stopWithOneLine(_ message: String) -> Never {
    let env = ProcessInfo.processInfo.environment
    let rank = env["OMPI_COMM_WORLD_RANK"] ?? env["PMI_RANK"]
    FileHandle.standardError.write(Data(("loom: " + (rank.map { "rank \($0): " } ?? "") + message + "\n").utf8))
    exit(1)
}
