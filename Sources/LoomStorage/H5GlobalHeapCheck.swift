import Foundation

/// Checks the global heap collections of an HDF5 file (where variable-length strings live)
/// before libhdf5 reads it. The format gives them no checksum, and libhdf5 1.10 trusts each
/// object's stored size: a damaged size makes it copy past the end of its buffer and crash
/// (a segmentation fault, found by ReaderFuzzTests flipping one bit in a checkpoint's
/// checksum label). Layout (HDF5 format spec, "Global Heap"): "GCOL", version 1, 3 reserved
/// bytes, the collection size (8 bytes, little-endian); then objects of a 2-byte index, a
/// 2-byte reference count, 4 reserved bytes, an 8-byte size and the data padded to 8 bytes;
/// index 0 is free space (its size includes its header). A size that runs past the collection
/// or a free space of size 0 (libhdf5 then loops forever) is refused.
enum GlobalHeapCheck {
    /// What is wrong with the first damaged collection in `path`, or nil.
    static func damage(in path: String) -> String? {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else { return nil }
        return data.withUnsafeBytes { raw -> String? in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
            let n = raw.count
            func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(base[at + $1]) << (8 * $1) } }
            func u16(_ at: Int) -> Int { Int(base[at]) | Int(base[at + 1]) << 8 }
            var from = 0
            // "GCOL" version 1: G C O L 01 00 00 00.
            while from + 16 <= n, let hit = memchr(base + from, 0x47, n - from) {
                let at = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                from = at + 1
                guard at + 16 <= n, base[at + 1] == 0x43, base[at + 2] == 0x4F, base[at + 3] == 0x4C,
                      base[at + 4] == 1, base[at + 5] == 0, base[at + 6] == 0, base[at + 7] == 0 else { continue }
                let size = u64(at + 8)
                guard size >= 16 else { return "global heap collection at byte \(at) claims \(size) bytes" }
                // A collection past the end of the file (a truncated or unfinished file): libhdf5
                // refuses to read past the end, and reports the file's real problem.
                guard size <= UInt64(n - at) else { continue }
                // The walk of libhdf5's H5HG__cache_heap_deserialize: it trusts every size, and a
                // free-space object (index 0) of size 0 makes it loop forever.
                let end = at + Int(size)
                var o = at + 16
                while o < end {
                    if o + 16 > end { o = end; break }   // a tail too small for a header: free space
                    let index = u16(o), objectSize = u64(o + 8)
                    let room = UInt64(end - o)
                    if index == 0 {
                        guard objectSize >= 16, objectSize <= room else {
                            return "the free space of the global heap collection at byte \(at) claims \(objectSize) bytes where \(room) remain"
                        }
                        o += Int(objectSize)
                    } else {
                        guard objectSize <= room - 16 else {
                            return "object \(index) of the global heap collection at byte \(at) claims \(objectSize) bytes, more than the collection holds"
                        }
                        o += 16 + (Int(objectSize) + 7) / 8 * 8
                    }
                }
                if o != end { return "the objects of the global heap collection at byte \(at) do not end at its end" }
            }
            return nil
        }
    }
}
