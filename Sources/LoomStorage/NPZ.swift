import CZlib
import Foundation

/// One array of an `.npy` file (NumPy's format 1.0–3.0), its values widened to double.
public struct NPYArray: Equatable, Sendable {
    /// Element types Loom reads and writes.
    public enum DType: String, Sendable {
        case float64 = "<f8", float32 = "<f4", int64 = "<i8", int32 = "<i4", uint8 = "|u1"
        var size: Int { switch self { case .float64, .int64: return 8; case .float32, .int32: return 4; case .uint8: return 1 } }
    }

    public var shape: [Int]
    /// The values in C (row-major) order.
    public var values: [Double]
    /// The type stored in the file (and written back).
    public var dtype: DType

    public init(shape: [Int], values: [Double], dtype: DType = .float64) {
        precondition(values.count == shape.reduce(1, *), "NPYArray: \(values.count) values for shape \(shape)")
        self.shape = shape
        self.values = values
        self.dtype = dtype
    }

    /// The `.npy` bytes of this array (format 1.0, header padded to 64 bytes as NumPy does).
    public func encoded() -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        out += [UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
        out += Array(header.utf8)
        out.reserveCapacity(out.count + values.count * dtype.size)
        for v in values {
            switch dtype {
            case .float64: withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 }
            case .float32: withUnsafeBytes(of: Float(v).bitPattern.littleEndian) { out += $0 }
            case .int64: withUnsafeBytes(of: Int64(v).littleEndian) { out += $0 }
            case .int32: withUnsafeBytes(of: Int32(v).littleEndian) { out += $0 }
            case .uint8: out.append(UInt8(v))
            }
        }
        return out
    }

    /// Parses `.npy` bytes; `name` is what errors call the array.
    public static func decode(_ b: [UInt8], path: String, name: String) throws -> NPYArray {
        func bad(_ detail: String) -> StorageError { .badInput(path: path, detail: "array '\(name)': \(detail)") }
        guard b.count >= 10, b[0] == 0x93, Array(b[1..<6]) == Array("NUMPY".utf8) else { throw bad("not a .npy array (no \\x93NUMPY magic)") }
        let major = b[6]
        let headerLength: Int, start: Int
        switch major {
        case 1: headerLength = Int(b[8]) | Int(b[9]) << 8; start = 10
        case 2, 3:
            guard b.count >= 12 else { throw bad("truncated header") }
            headerLength = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24; start = 12
        default: throw bad(".npy format version \(major) is not supported (known: 1, 2, 3)")
        }
        guard start + headerLength <= b.count else { throw bad("truncated header") }
        let header = String(decoding: b[start..<(start + headerLength)], as: UTF8.self)
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descrText = field("descr"), descrText.hasPrefix("'"),
              let descrEnd = descrText.dropFirst().firstIndex(of: "'") else { throw bad("header has no 'descr'") }
        let descr = String(descrText[descrText.index(after: descrText.startIndex)..<descrEnd])
        let aliases: [String: DType] = ["<f8": .float64, "<f4": .float32, "<i8": .int64, "<i4": .int32, "|u1": .uint8, "<u1": .uint8, "|i1": .uint8]
        guard let dtype = aliases[descr], descr != "|i1" else {
            throw bad("element type '\(descr)' is not supported (float64 '<f8', float32 '<f4', int64 '<i8', int32 '<i4', uint8 '|u1')")
        }
        guard let fortranText = field("fortran_order") else { throw bad("header has no 'fortran_order'") }
        let fortran = fortranText.hasPrefix("True")
        guard let shapeText = field("shape"), shapeText.hasPrefix("("), let close = shapeText.firstIndex(of: ")") else {
            throw bad("header has no 'shape'")
        }
        let parts = shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var shape: [Int] = []
        for p in parts {
            guard let v = Int(p), v >= 0, v <= 1 << 40 else { throw bad("shape entry '\(p)' is not a size") }
            shape.append(v)
        }
        var count = 1
        for s in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: s)
            guard !overflow, product <= 1 << 34 else { throw bad("shape \(shape) is too large") }
            count = product
        }
        let dataStart = start + headerLength, bytes = count * dtype.size
        guard b.count - dataStart >= bytes else { throw bad("holds \(b.count - dataStart) data bytes, shape \(shape) needs \(bytes)") }
        var values = [Double](repeating: 0, count: count)
        b.withUnsafeBytes { raw in
            let p = raw.baseAddress! + dataStart
            for i in 0..<count {
                let q = p + i * dtype.size
                switch dtype {
                case .float64: values[i] = Double(bitPattern: UInt64(littleEndian: q.loadUnaligned(as: UInt64.self)))
                case .float32: values[i] = Double(Float(bitPattern: UInt32(littleEndian: q.loadUnaligned(as: UInt32.self))))
                case .int64: values[i] = Double(Int64(littleEndian: q.loadUnaligned(as: Int64.self)))
                case .int32: values[i] = Double(Int32(littleEndian: q.loadUnaligned(as: Int32.self)))
                case .uint8: values[i] = Double(q.load(as: UInt8.self))
                }
            }
        }
        if fortran && shape.count > 1 {
            // Column-major storage: element (i0, i1, …) sits at i0 + n0·(i1 + n1·(…)).
            var c = [Double](repeating: 0, count: count)
            var index = [Int](repeating: 0, count: shape.count)
            for k in 0..<count {
                var f = 0, stride = 1
                for a in 0..<shape.count { f += index[a] * stride; stride *= shape[a] }
                c[k] = values[f]
                var a = shape.count - 1
                while a >= 0 { index[a] += 1; if index[a] < shape[a] { break }; index[a] = 0; a -= 1 }
            }
            values = c
        }
        return NPYArray(shape: shape, values: values, dtype: dtype)
    }
}

/// NumPy's `.npz` archives (`np.savez`, `np.savez_compressed`): a zip file of `.npy` arrays,
/// the format of pytorch-fid's and guided-diffusion's statistics (`mu`, `sigma`). Reads
/// stored and deflated members (zip64 included); writes stored members.
public enum NPZ {
    /// Every array of the archive by name (without `.npy`).
    public static func read(path: String) throws -> [String: NPYArray] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileManager.default.fileExists(atPath: path)
                ? StorageError.io(path: path, operation: "read", reason: "not readable") : StorageError.missing(path: path, hint: "")
        }
        let b = [UInt8](data)
        func bad(_ detail: String) -> StorageError { .badInput(path: path, detail: "not a valid .npz (zip) file: \(detail)") }
        func u16(_ o: Int) throws -> Int { guard o >= 0, o + 2 <= b.count else { throw bad("truncated") }; return Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) throws -> Int { try u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) throws -> Int {
            let v = try u32(o) | u32(o + 4) << 32
            guard v >= 0 else { throw bad("offset out of range") }
            return v
        }
        // End of central directory: the last signature within the final 64 KiB + 22 bytes.
        var eocd = -1
        var o = b.count - 22
        while o >= max(0, b.count - 22 - 65_535) {
            if b[o] == 0x50 && b[o + 1] == 0x4B && b[o + 2] == 0x05 && b[o + 3] == 0x06 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw bad("no end-of-central-directory record") }
        var entries = try u16(eocd + 10), cdOffset = try u32(eocd + 16)
        if entries == 0xFFFF || cdOffset == 0xFFFF_FFFF {
            let locator = eocd - 20
            guard locator >= 0, try u32(locator) == 0x0706_4B50 else { throw bad("zip64 locator missing") }
            let z = try u64(locator + 8)
            guard try u32(z) == 0x0606_4B50 else { throw bad("zip64 end record missing") }
            entries = try u64(z + 32)
            cdOffset = try u64(z + 48)
        }
        guard entries <= 100_000 else { throw bad("\(entries) entries") }
        var arrays: [String: NPYArray] = [:]
        var p = cdOffset
        for _ in 0..<entries {
            guard try u32(p) == 0x0201_4B50 else { throw bad("central directory entry expected at byte \(p)") }
            let flags = try u16(p + 8), method = try u16(p + 10), crc = try u32(p + 16)
            var compressed = try u32(p + 20), size = try u32(p + 24)
            let nameLength = try u16(p + 28), extraLength = try u16(p + 30), commentLength = try u16(p + 32)
            var local = try u32(p + 42)
            guard p + 46 + nameLength <= b.count else { throw bad("truncated") }
            let name = String(decoding: b[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            // Zip64 extra field: the 64-bit values of whichever fields hold 0xFFFFFFFF, in order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = try u16(e), length = try u16(e + 2)
                if id == 1 {
                    var q = e + 4
                    if size == 0xFFFF_FFFF { size = try u64(q); q += 8 }
                    if compressed == 0xFFFF_FFFF { compressed = try u64(q); q += 8 }
                    if local == 0xFFFF_FFFF { local = try u64(q) }
                }
                e += 4 + length
            }
            p = extraEnd + commentLength
            guard flags & 1 == 0 else { throw bad("member \(name) is encrypted") }
            guard try u32(local) == 0x0403_4B50 else { throw bad("local header of \(name) missing") }
            let start = local + 30 + (try u16(local + 26)) + (try u16(local + 28))
            guard start + compressed <= b.count, size <= 1 << 36 else { throw bad("member \(name) is truncated") }
            let raw = Array(b[start..<(start + compressed)])
            let content: [UInt8]
            switch method {
            case 0: content = raw
            case 8: content = try inflate(raw, size: size, path: path, name: name)
            default: throw bad("member \(name) uses compression method \(method) (stored 0 and deflate 8 are supported)")
            }
            guard content.count == size else { throw bad("member \(name) has \(content.count) bytes, its header says \(size)") }
            let check = content.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
            guard Int(check) == crc else { throw bad("member \(name) fails its CRC-32 check (damaged)") }
            let key = name.hasSuffix(".npy") ? String(name.dropLast(4)) : name
            arrays[key] = try NPYArray.decode(content, path: path, name: key)
        }
        return arrays
    }

    /// Raw deflate (zip method 8) of `size` bytes through zlib.
    static func inflate(_ input: [UInt8], size: Int, path: String, name: String) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: max(size, 1))
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw StorageError.io(path: path, operation: "inflate \(name)", reason: "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var input = input
        let status: Int32 = input.withUnsafeMutableBufferPointer { inp in
            output.withUnsafeMutableBufferPointer { out in
                stream.next_in = inp.baseAddress
                stream.avail_in = uInt(inp.count)
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(out.count)
                return CZlib.inflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END, Int(stream.total_out) == size else {
            throw StorageError.badInput(path: path, detail: "member \(name): corrupt deflate data")
        }
        return size == 0 ? [] : output
    }

    /// Writes `arrays` (name, array) as an uncompressed `.npz` through a temporary file and a
    /// rename, so a reader never sees half a file.
    public static func write(path: String, arrays: [(String, NPYArray)]) throws {
        var out: [UInt8] = [], central: [UInt8] = []
        func le16(_ v: Int, _ a: inout [UInt8]) { a += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func le32(_ v: Int, _ a: inout [UInt8]) { le16(v & 0xFFFF, &a); le16((v >> 16) & 0xFFFF, &a) }
        for (name, array) in arrays {
            let member = array.encoded(), file = Array((name + ".npy").utf8)
            guard member.count < 0xFFFF_FFFF, out.count < 0xFFFF_FFFF else {
                throw StorageError.badArgument(name: "array \(name) for \(path)", value: "\(member.count) bytes", expected: "under 4 GiB (no zip64 writing)")
            }
            let crc = member.withUnsafeBufferPointer { Int(crc32(0, $0.baseAddress, uInt($0.count))) }
            let offset = out.count
            le32(0x0403_4B50, &out); le16(20, &out); le16(0, &out); le16(0, &out); le16(0, &out); le16(0x21, &out)
            le32(crc, &out); le32(member.count, &out); le32(member.count, &out); le16(file.count, &out); le16(0, &out)
            out += file + member
            le32(0x0201_4B50, &central); le16(20, &central); le16(20, &central); le16(0, &central); le16(0, &central)
            le16(0, &central); le16(0x21, &central); le32(crc, &central); le32(member.count, &central); le32(member.count, &central)
            le16(file.count, &central); le16(0, &central); le16(0, &central); le16(0, &central); le16(0, &central)
            le32(0, &central); le32(offset, &central)
            central += file
        }
        let cdOffset = out.count
        out += central
        le32(0x0605_4B50, &out); le16(0, &out); le16(0, &out); le16(arrays.count, &out); le16(arrays.count, &out)
        le32(central.count, &out); le32(cdOffset, &out); le16(0, &out)
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do {
            try Data(out).write(to: temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw StorageError.io(path: path, operation: "write", reason: "\(error.localizedDescription)")
        }
        if rename(temporary.path, path) != 0 {
            let code = errno
            try? FileManager.default.removeItem(at: temporary)
            throw StorageError.posix(path, "rename into place", code)
        }
    }
}
