import Foundation

/// TensorBoard event files (`events.out.tfevents.<time>.<host>`) written without a protobuf
/// library: the few messages Loom needs are encoded by hand, framed as TFRecords.
///
/// Field numbers, from tensorboard's `tensorboard/compat/proto/event.proto` and
/// `summary.proto` (checked against the descriptors of the `tensorboard` package 2.21):
///
///     message Event   { double wall_time = 1; int64 step = 2;
///                       oneof what { string file_version = 3; Summary summary = 5; … } }
///     message Summary { repeated Value value = 1;
///       message Value { string tag = 1; oneof value { float simple_value = 2; Image image = 4; … } }
///       message Image { int32 height = 1; int32 width = 2; int32 colorspace = 3;
///                       bytes encoded_image_string = 4; } }
///
/// A TFRecord is `uint64 length`, `uint32 masked_crc32c(length)`, the bytes, and
/// `uint32 masked_crc32c(bytes)`, little-endian; masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8.
public final class TensorBoardWriter {
    /// The event file being written.
    public let path: String
    private let handle: FileHandle

    /// Opens a new event file in `folder` (created if needed) and writes the version event.
    public init(folder: String, wallTime: Double = Date().timeIntervalSince1970) throws {
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw StorageError.io(path: folder, operation: "create folder", reason: error.localizedDescription)
        }
        let host = ProcessInfo.processInfo.hostName
        var name = String(format: "events.out.tfevents.%010d.%@", Int(wallTime), host)
        // A second writer in the same second (a quick restart) gets its own file.
        var k = 1
        while FileManager.default.fileExists(atPath: folder + "/" + name) { name = String(format: "events.out.tfevents.%010d.%@.%d", Int(wallTime), host, k); k += 1 }
        path = folder + "/" + name
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw StorageError.io(path: path, operation: "create", reason: String(cString: strerror(errno)))
        }
        handle = h
        var event = Protobuf()
        event.double(1, wallTime)
        event.varint(2, 0)
        event.bytes(3, Array("brain.Event:2".utf8))
        try write(record: event.bytes)
    }

    deinit { try? handle.close() }

    /// One event holding `values` as scalar summaries (`simple_value`, float32) at `step`.
    public func scalars(_ values: [(String, Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        var summary = Protobuf()
        for (tag, v) in values {
            var value = Protobuf()
            value.bytes(1, Array(tag.utf8))
            value.float(2, Float(v))
            summary.bytes(1, value.bytes)
        }
        try event(summary: summary, step: step, wallTime: wallTime)
    }

    /// One event holding `image` as a PNG image summary under `tag` at `step`.
    public func image(_ tag: String, _ image: Image8, step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        var img = Protobuf()
        img.varint(1, UInt64(image.height))
        img.varint(2, UInt64(image.width))
        img.varint(3, UInt64(image.channels))      // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
        img.bytes(4, try PNG.encode(image: image))
        var value = Protobuf()
        value.bytes(1, Array(tag.utf8))
        value.bytes(4, img.bytes)
        var summary = Protobuf()
        summary.bytes(1, value.bytes)
        try event(summary: summary, step: step, wallTime: wallTime)
    }

    func event(summary: Protobuf, step: Int, wallTime: Double) throws {
        var event = Protobuf()
        event.double(1, wallTime)
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.bytes(5, summary.bytes)
        try write(record: event.bytes)
    }

    /// Appends one TFRecord (written at once, so a killed run keeps whole records).
    func write(record data: [UInt8]) throws {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out += length
        withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
        do { try handle.write(contentsOf: Data(out)) } catch {
            throw StorageError.io(path: path, operation: "write event", reason: error.localizedDescription)
        }
    }
}

/// A protobuf message being encoded: fields appended in order (wire types 0, 1, 2, 5).
struct Protobuf {
    private(set) var bytes: [UInt8] = []

    mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: UInt64) { rawVarint(UInt64(field) << 3 | wire) }
    /// int32/int64/uint64 (wire type 0).
    mutating func varint(_ field: Int, _ v: UInt64) { key(field, 0); rawVarint(v) }
    /// double (wire type 1).
    mutating func double(_ field: Int, _ v: Double) { key(field, 1); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    /// string, bytes, embedded message (wire type 2).
    mutating func bytes(_ field: Int, _ v: [UInt8]) { key(field, 2); rawVarint(UInt64(v.count)); bytes += v }
    /// float (wire type 5).
    mutating func float(_ field: Int, _ v: Float) { key(field, 5); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord frames use it.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// The CRC-32C of `bytes` (of "123456789": 0xE3069283).
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked CRC: rotate right by 15 bits and add 0xa282ead8.
    public static func masked(_ bytes: [UInt8]) -> UInt32 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}
