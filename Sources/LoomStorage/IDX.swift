import CZlib
import Foundation

/// An unsigned-byte idx array (the MNIST format): dimensions and row-major bytes.
public struct IDXArray: Equatable, Sendable {
    /// Extent of each axis (images: `[N, rows, columns]`; labels: `[N]`).
    public var dims: [Int]
    /// The elements, row-major.
    public var bytes: [UInt8]

    /// An array of `dims` over `bytes`.
    public init(dims: [Int], bytes: [UInt8]) {
        self.dims = dims
        self.bytes = bytes
    }
}

/// Reads and writes idx files (LeCun's MNIST format: magic `00 00 08 ndims`, big-endian
/// 32-bit extents, then the bytes), gzipped or plain: zlib's gz functions read both.
public enum IDX {
    /// Reads an unsigned-byte idx file (`.gz` or plain).
    public static func read(path: String) throws -> IDXArray {
        guard FileManager.default.fileExists(atPath: path) else { throw StorageError.missing(path: path, hint: "") }
        guard let file = gzopen(path, "rb") else { throw StorageError.posix(path, "open") }
        defer { gzclose(file) }
        gzbuffer(file, 1 << 20)

        func readExactly(_ count: Int, into pointer: UnsafeMutableRawPointer, what: String) throws {
            var done = 0
            while done < count {
                let n = gzread(file, pointer + done, UInt32(min(count - done, 1 << 30)))
                if n < 0 {
                    var code: Int32 = 0
                    let text = gzerror(file, &code).map { String(cString: $0) } ?? "zlib error \(code)"
                    throw StorageError.badInput(path: path, detail: "corrupt gzip stream while reading \(what): \(text)")
                }
                if n == 0 {
                    throw StorageError.badInput(path: path, detail: "truncated: \(what) has \(done) of \(count) bytes")
                }
                done += Int(n)
            }
        }

        var header = [UInt8](repeating: 0, count: 4)
        try readExactly(4, into: &header, what: "the idx header")
        guard header[0] == 0, header[1] == 0 else {
            throw StorageError.badInput(path: path, detail: String(format: "not an idx file (magic %02x %02x, expected 00 00)",
                                                                   header[0], header[1]))
        }
        guard header[2] == 0x08 else {
            throw StorageError.badInput(path: path, detail: String(format: "idx element type 0x%02x, expected 0x08 (unsigned byte)", header[2]))
        }
        let rank = Int(header[3])
        guard (1...4).contains(rank) else {
            throw StorageError.badInput(path: path, detail: "idx has \(rank) dimensions, expected 1 to 4")
        }
        var raw = [UInt8](repeating: 0, count: 4 * rank)
        try readExactly(4 * rank, into: &raw, what: "the idx dimensions")
        let dims = (0..<rank).map { i in raw[(4 * i)..<(4 * i + 4)].reduce(0) { $0 << 8 | Int($1) } }
        let total = dims.reduce(1, *)
        guard total <= 1 << 36 else {
            throw StorageError.badInput(path: path, detail: "idx dimensions \(dims) are implausibly large")
        }
        var bytes = [UInt8](repeating: 0, count: total)
        if total > 0 {
            try bytes.withUnsafeMutableBytes { try readExactly(total, into: $0.baseAddress!, what: "the idx data \(dims)") }
        }
        return IDXArray(dims: dims, bytes: bytes)
    }

    /// Writes an unsigned-byte idx file, gzipped when `gzip` (the usual `.gz` form).
    public static func write(path: String, array: IDXArray, gzip: Bool = true) throws {
        guard array.dims.count >= 1, array.dims.count <= 4, array.dims.reduce(1, *) == array.bytes.count else {
            throw StorageError.badArgument(name: "idx array", value: "dims \(array.dims), \(array.bytes.count) bytes",
                                           expected: "1 to 4 dimensions whose product is the byte count")
        }
        var data: [UInt8] = [0, 0, 0x08, UInt8(array.dims.count)]
        for d in array.dims { data += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        data += array.bytes
        if !gzip {
            guard FileManager.default.createFile(atPath: path, contents: Data(data)) else { throw StorageError.posix(path, "write") }
            return
        }
        guard let file = gzopen(path, "wb6") else { throw StorageError.posix(path, "open for writing") }
        let written = data.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        let closed = gzclose(file)
        guard written == Int32(data.count), closed == Z_OK else {
            throw StorageError.io(path: path, operation: "write gzip", reason: "zlib wrote \(written) of \(data.count) bytes")
        }
    }
}
