import Foundation

/// XXH64 (Yann Collet's xxHash, 64-bit variant), streaming. Chosen for checkpoint checksums
/// because it runs at memory speed (a 26 MB checkpoint hashes in milliseconds) and is a
/// published algorithm, so outside tools (Python's `xxhash`) can recompute every checksum.
/// Input bytes are read little-endian, as the specification defines.
public struct XXH64 {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private let seed: UInt64
    private var v1: UInt64, v2: UInt64, v3: UInt64, v4: UInt64
    private var total: UInt64 = 0
    /// Bytes of an unfinished 32-byte stripe.
    private var pending = [UInt8](repeating: 0, count: 32)
    private var pendingCount = 0

    /// A hasher with `seed` (checkpoints use 0).
    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ XXH64.p1 &+ XXH64.p2
        v2 = seed &+ XXH64.p2
        v3 = seed
        v4 = seed &- XXH64.p1
    }

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    @inline(__always) static func load64(_ p: UnsafeRawPointer) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)) }
    @inline(__always) static func load32(_ p: UnsafeRawPointer) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)) }

    /// Feeds `count` bytes at `bytes`.
    public mutating func update(_ bytes: UnsafeRawPointer, count: Int) {
        if count <= 0 { return }
        total &+= UInt64(count)
        var p = bytes
        var left = count
        if pendingCount > 0 {
            let take = min(32 - pendingCount, left)
            pending.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: pendingCount).copyMemory(from: p, byteCount: take) }
            pendingCount += take
            p += take
            left -= take
            if pendingCount < 32 { return }
            let stripe = pending
            stripe.withUnsafeBytes { stripes($0.baseAddress!, count: 32) }
            pendingCount = 0
        }
        let whole = left & ~31
        if whole > 0 { stripes(p, count: whole) }
        p += whole
        left -= whole
        if left > 0 {
            pending.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: p, byteCount: left) }
            pendingCount = left
        }
    }

    /// Feeds a whole number of 32-byte stripes.
    private mutating func stripes(_ p: UnsafeRawPointer, count: Int) {
        var a = v1, b = v2, c = v3, d = v4
        var i = 0
        while i < count {
            a = XXH64.round(a, XXH64.load64(p + i))
            b = XXH64.round(b, XXH64.load64(p + i + 8))
            c = XXH64.round(c, XXH64.load64(p + i + 16))
            d = XXH64.round(d, XXH64.load64(p + i + 24))
            i += 32
        }
        v1 = a; v2 = b; v3 = c; v4 = d
    }

    /// Feeds the bytes of an array.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { if let b = $0.baseAddress { update(b, count: $0.count) } }
    }

    /// Feeds a string's UTF-8 bytes.
    public mutating func update(_ text: String) { update(Array(text.utf8)) }

    /// Feeds an integer as 8 little-endian bytes.
    public mutating func update(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { update($0.baseAddress!, count: 8) }
    }

    /// The hash of everything fed so far (the hasher may continue to be fed).
    public func digest() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = XXH64.rotl(v1, 1) &+ XXH64.rotl(v2, 7) &+ XXH64.rotl(v3, 12) &+ XXH64.rotl(v4, 18)
            h = XXH64.merge(h, v1)
            h = XXH64.merge(h, v2)
            h = XXH64.merge(h, v3)
            h = XXH64.merge(h, v4)
        } else {
            h = seed &+ XXH64.p5
        }
        h &+= total
        pending.withUnsafeBytes { raw in
            let p = raw.baseAddress!
            var i = 0
            while i + 8 <= pendingCount {
                h = XXH64.rotl(h ^ XXH64.round(0, XXH64.load64(p + i)), 27) &* XXH64.p1 &+ XXH64.p4
                i += 8
            }
            if i + 4 <= pendingCount {
                h = XXH64.rotl(h ^ (UInt64(XXH64.load32(p + i)) &* XXH64.p1), 23) &* XXH64.p2 &+ XXH64.p3
                i += 4
            }
            while i < pendingCount {
                h = XXH64.rotl(h ^ (UInt64(raw[i]) &* XXH64.p5), 11) &* XXH64.p1
                i += 1
            }
        }
        h ^= h >> 33
        h &*= XXH64.p2
        h ^= h >> 29
        h &*= XXH64.p3
        h ^= h >> 32
        return h
    }

    /// The hash of `count` bytes at `bytes`.
    public static func hash(_ bytes: UnsafeRawPointer, count: Int, seed: UInt64 = 0) -> UInt64 {
        var h = XXH64(seed: seed)
        h.update(bytes, count: count)
        return h.digest()
    }

    /// The hash of an array of bytes.
    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        var h = XXH64(seed: seed)
        h.update(bytes)
        return h.digest()
    }

    /// A hash as 16 lowercase hex digits (how checksums are stored and printed).
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// A dataset folder's fingerprint for a checkpoint's `dataset_checksums`: a resumed run can
/// tell whether it reads the same data.
public enum DatasetChecksum {
    /// `xxh64:` and 16 hex digits: XXH64 of `index.json`'s bytes followed, for every shard in
    /// index order, by its relative path, a 0 byte and the XXH64 of the shard file's bytes
    /// (8 bytes, little-endian). Without `contents` only `index.json` is hashed (instant; it
    /// still records every shard's size).
    public static func of(folder: String, contents: Bool = true) throws -> String {
        let index = try DatasetIndex.load(folder: folder)
        let indexPath = folder + "/" + DatasetIndex.fileName
        guard let indexBytes = FileManager.default.contents(atPath: indexPath) else {
            throw StorageError.posix(indexPath, "read")
        }
        var h = XXH64()
        h.update([UInt8](indexBytes))
        if contents {
            for split in index.splits.keys.sorted() {
                for shard in index.splits[split]!.shards {
                    h.update(shard.file)
                    h.update([0])
                    h.update(try fileHash(folder + "/" + shard.file))
                }
            }
        }
        return "xxh64:" + XXH64.hex(h.digest())
    }

    /// XXH64 of a file's bytes, read in 4 MiB blocks.
    public static func fileHash(_ path: String) throws -> UInt64 {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw StorageError.missing(path: path, hint: "") }
        defer { try? handle.close() }
        var h = XXH64()
        while true {
            let block: Data
            do { block = try handle.read(upToCount: 4 << 20) ?? Data() } catch {
                throw StorageError.io(path: path, operation: "read", reason: error.localizedDescription)
            }
            if block.isEmpty { break }
            block.withUnsafeBytes { h.update($0.baseAddress!, count: $0.count) }
        }
        return h.digest()
    }
}
