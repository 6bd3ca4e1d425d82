import CHDF5
import Foundation

/// Element types Loom keeps in HDF5 files. Files always hold the little-endian standard
/// type; memory uses the native one (HDF5 converts).
public enum H5ElementType: String, Sendable, Codable, CaseIterable {
    case uint8, int32, int64, float32, float64

    /// Bytes per element in memory.
    public var byteSize: Int {
        switch self {
        case .uint8: return 1
        case .int32, .float32: return 4
        case .int64, .float64: return 8
        }
    }

    var memoryType: hid_t {
        switch self {
        case .uint8: return loom_h5t_native_uint8()
        case .int32: return loom_h5t_native_int32()
        case .int64: return loom_h5t_native_int64()
        case .float32: return loom_h5t_native_float()
        case .float64: return loom_h5t_native_double()
        }
    }

    var fileType: hid_t {
        switch self {
        case .uint8: return loom_h5t_std_u8le()
        case .int32: return loom_h5t_std_i32le()
        case .int64: return loom_h5t_std_i64le()
        case .float32: return loom_h5t_ieee_f32le()
        case .float64: return loom_h5t_ieee_f64le()
        }
    }

    /// The element type a stored HDF5 type matches, or nil for anything else (strings,
    /// compounds, other integer widths).
    static func matching(_ type: hid_t) -> H5ElementType? {
        let size = H5Tget_size(type)
        switch H5Tget_class(type) {
        case H5T_INTEGER:
            let signed = H5Tget_sign(type) != H5T_SGN_NONE
            switch (size, signed) {
            case (1, false): return .uint8
            case (4, true): return .int32
            case (8, true): return .int64
            default: return nil
            }
        case H5T_FLOAT:
            return size == 4 ? .float32 : size == 8 ? .float64 : nil
        default:
            return nil
        }
    }

    /// How a stored HDF5 type reads in messages ("uint16", "string", …).
    static func describe(_ type: hid_t) -> String {
        if let t = matching(type) { return t.rawValue }
        let bits = H5Tget_size(type) * 8
        switch H5Tget_class(type) {
        case H5T_INTEGER: return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + "\(bits)"
        case H5T_FLOAT: return "float\(bits)"
        case H5T_STRING: return "string"
        default: return "an HDF5 type of class \(H5Tget_class(type).rawValue)"
        }
    }
}

/// Swift scalars that map to an `H5ElementType`.
public protocol H5Scalar {
    /// The matching HDF5 element type.
    static var h5Type: H5ElementType { get }
}
extension UInt8: H5Scalar { public static var h5Type: H5ElementType { .uint8 } }
extension Int32: H5Scalar { public static var h5Type: H5ElementType { .int32 } }
extension Int64: H5Scalar { public static var h5Type: H5ElementType { .int64 } }
extension Int: H5Scalar { public static var h5Type: H5ElementType { .int64 } }
extension Float: H5Scalar { public static var h5Type: H5ElementType { .float32 } }
extension Double: H5Scalar { public static var h5Type: H5ElementType { .float64 } }

/// An open HDF5 file. Groups and datasets opened from it hold it, so it stays open while any
/// of them is in use; `close()` ends this handle (HDF5 closes the file after its last object).
public final class H5File: @unchecked Sendable {
    /// File path, used in every error message.
    public let path: String
    /// The HDF5 file id.
    public private(set) var id: hid_t

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    /// The root group `/` (attributes of the file live here).
    public var root: H5Group {
        H5Library.quiet()
        let g = H5Gopen2(id, "/", H5Library.plist)
        if g < 0 { H5Eclear2(0) }
        return H5Group(id: g, path: path, name: "/", file: self)
    }

    /// Creates a new file; fails if it exists unless `overwrite`.
    public static func create(_ path: String, overwrite: Bool = false) throws -> H5File {
        H5Library.quiet()
        if !overwrite && FileManager.default.fileExists(atPath: path) { throw StorageError.alreadyExists(path: path) }
        let flags = overwrite ? loom_h5f_acc_trunc() : loom_h5f_acc_excl()
        // Object headers with checksums (see loom_h5p_file_access_checksummed).
        let access = try H5Library.check(loom_h5p_file_access_checksummed(), path, "create file access properties")
        defer { H5Pclose(access) }
        // No modification times in object headers: the same content writes the same bytes
        // (`loom encode` at 1 and 2 ranks, `loom prepare` twice give equal content checksums).
        let creation = try H5Library.check(loom_h5p_file_create_untimed(), path, "create file creation properties")
        defer { H5Pclose(creation) }
        let id = try H5Library.check(H5Fcreate(path, flags, creation, access), path, "create HDF5 file")
        return H5File(path: path, id: id)
    }

    /// Opens an existing file; a missing, truncated or non-HDF5 file gives a clear error.
    public static func open(_ path: String, writable: Bool = false) throws -> H5File {
        H5Library.quiet()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw StorageError.missing(path: path, hint: "")
        }
        if H5Fis_hdf5(path) <= 0 {
            H5Eclear2(0)
            throw StorageError.badInput(path: path, detail: "not an HDF5 file (no HDF5 signature)")
        }
        if let damage = GlobalHeapCheck.damage(in: path) {
            throw StorageError.badInput(path: path, detail: "damaged: \(damage)")
        }
        let flags = writable ? loom_h5f_acc_rdwr() : loom_h5f_acc_rdonly()
        let id = try H5Library.check(H5Fopen(path, flags, H5Library.plist), path, "open HDF5 file")
        return H5File(path: path, id: id)
    }

    /// Writes HDF5's buffers to the operating system (not to disk: see `Durable.fsync`).
    public func flush() throws {
        try H5Library.check(H5Fflush(id, H5F_SCOPE_GLOBAL), path, "flush")
    }

    /// Closes this file handle.
    public func close() {
        if id >= 0 { H5Library.quiet(); H5Fclose(id); id = -1 }
    }

    deinit { close() }
}

/// Holds attributes: groups (including the root) and datasets.
public protocol H5AttributeHolder {
    /// The HDF5 object id.
    var id: hid_t { get }
    /// The file's path (for messages).
    var path: String { get }
    /// The object's path inside the file (for messages).
    var name: String { get }
}

/// A group of an open file.
public final class H5Group: H5AttributeHolder, @unchecked Sendable {
    /// The HDF5 group id.
    public private(set) var id: hid_t
    /// The file's path.
    public let path: String
    /// The group's path inside the file.
    public let name: String
    /// Keeps the file open while the group is in use.
    let file: H5File

    init(id: hid_t, path: String, name: String, file: H5File) {
        self.id = id
        self.path = path
        self.name = name
        self.file = file
    }

    func child(_ n: String) -> String { name == "/" ? "/" + n : name + "/" + n }

    /// Whether a link `name` (group or dataset, one level) exists here.
    public func contains(_ childName: String) -> Bool {
        H5Library.quiet()
        let r = H5Lexists(id, childName, H5Library.plist)
        if r < 0 { H5Eclear2(0) }
        return r > 0
    }

    /// Names of the links in this group, in name order.
    public func children() throws -> [String] {
        guard let names = try linkNames(in: H5_INDEX_NAME) else { throw H5Library.failure(path, "list \(name)") }
        return names
    }

    /// Names of the links in this group in the order of `index`; nil when a name cannot be
    /// read that way (HDF5's error stack still holds why).
    func linkNames(in index: H5_index_t) throws -> [String]? {
        H5Library.quiet()
        var info = H5G_info_t()
        try H5Library.check(H5Gget_info(id, &info), path, "list \(name)")
        var names: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(id, ".", index, H5_ITER_INC, i, nil, 0, H5Library.plist)
            if n < 0 { return nil }
            var buffer = [CChar](repeating: 0, count: Int(n) + 1)
            _ = H5Lget_name_by_idx(id, ".", index, H5_ITER_INC, i, &buffer, Int(n) + 1, H5Library.plist)
            names.append(String(cString: buffer))
        }
        return names
    }

    /// Creates a child group.
    public func createGroup(_ childName: String) throws -> H5Group {
        H5Library.quiet()
        let g = try H5Library.check(H5Gcreate2(id, childName, H5Library.plist, H5Library.plist, H5Library.plist),
                                    path, "create group \(child(childName))")
        return H5Group(id: g, path: path, name: child(childName), file: file)
    }

    /// Opens a child group; a missing one is a schema error naming it.
    public func openGroup(_ childName: String) throws -> H5Group {
        guard contains(childName) else {
            throw StorageError.schema(path: path, key: "group \(child(childName))", expected: "present", found: "missing")
        }
        let g = try H5Library.check(H5Gopen2(id, childName, H5Library.plist), path, "open group \(child(childName))")
        return H5Group(id: g, path: path, name: child(childName), file: file)
    }

    /// Creates a dataset of `shape`. Chunks (clamped to the shape) are required for
    /// compression and checksums; filters run as h5py orders them: shuffle, deflate, Fletcher-32.
    public func createDataset(_ childName: String, type: H5ElementType, shape: [Int], chunks: [Int]? = nil,
                              compression: Int = 0, shuffle: Bool = false, checksum: Bool = false) throws -> H5Dataset {
        H5Library.quiet()
        let full = child(childName)
        guard (0...9).contains(compression) else {
            throw StorageError.badArgument(name: "compression", value: "\(compression)", expected: "a gzip level 0…9")
        }
        var dims = shape.map { hsize_t($0) }
        let space = try H5Library.check(H5Screate_simple(Int32(shape.count), &dims, nil), path, "create dataspace for \(full)")
        defer { H5Sclose(space) }
        let dcpl = try H5Library.check(H5Pcreate(loom_h5p_dataset_create()), path, "create properties for \(full)")
        defer { H5Pclose(dcpl) }
        try H5Library.check(H5Pset_obj_track_times(dcpl, false), path, "turn off modification times of \(full)")
        let empty = shape.contains(0) || shape.isEmpty
        if !empty, chunks != nil || compression > 0 || checksum {
            let wanted = chunks ?? shape
            guard wanted.count == shape.count else {
                throw StorageError.badArgument(name: "chunks", value: "\(wanted)", expected: "\(shape.count) extents for shape \(shape)")
            }
            var c = zip(wanted, shape).map { hsize_t(max(1, min($0, $1))) }
            try H5Library.check(H5Pset_chunk(dcpl, Int32(c.count), &c), path, "set chunks of \(full)")
            if shuffle { try H5Library.check(H5Pset_shuffle(dcpl), path, "set shuffle on \(full)") }
            if compression > 0 {
                try H5Library.check(H5Pset_deflate(dcpl, UInt32(compression)), path, "set gzip on \(full)")
            }
            if checksum { try H5Library.check(H5Pset_fletcher32(dcpl), path, "set Fletcher-32 on \(full)") }
        }
        let d = try H5Library.check(H5Dcreate2(id, childName, type.fileType, space, H5Library.plist, dcpl, H5Library.plist),
                                    path, "create dataset \(full)")
        return H5Dataset(id: d, path: path, name: full, type: type, shape: shape, file: file)
    }

    /// Creates a dataset holding `values` with `shape` (unchunked unless filters are asked for).
    @discardableResult
    public func write<T: H5Scalar>(_ childName: String, values: [T], shape: [Int], chunks: [Int]? = nil,
                                   compression: Int = 0, shuffle: Bool = false, checksum: Bool = false) throws -> H5Dataset {
        let d = try createDataset(childName, type: T.h5Type, shape: shape, chunks: chunks,
                                  compression: compression, shuffle: shuffle, checksum: checksum)
        try d.write(values)
        return d
    }

    /// Opens a child dataset; `chunkCacheBytes` sizes HDF5's cache of decompressed chunks for
    /// it (random row reads of a compressed dataset want enough to hold the chunks in use).
    public func openDataset(_ childName: String, chunkCacheBytes: Int? = nil) throws -> H5Dataset {
        H5Library.quiet()
        let full = child(childName)
        guard contains(childName) else {
            throw StorageError.schema(path: path, key: "dataset \(full)", expected: "present", found: "missing")
        }
        let dapl = try H5Library.check(H5Pcreate(loom_h5p_dataset_access()), path, "create access properties")
        defer { H5Pclose(dapl) }
        if let bytes = chunkCacheBytes {
            // A prime slot count well above the number of cached chunks keeps hash collisions rare.
            try H5Library.check(H5Pset_chunk_cache(dapl, 100_003, max(bytes, 1 << 20), 1.0), path, "set chunk cache")
        }
        let d = try H5Library.check(H5Dopen2(id, childName, dapl), path, "open dataset \(full)")
        let type = H5Dget_type(d)
        defer { H5Tclose(type) }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        let shape = dims.prefix(rank).map { Int($0) }
        guard let element = H5ElementType.matching(type) else {
            let found = H5ElementType.describe(type)
            H5Dclose(d)
            throw StorageError.schema(path: path, key: "dataset \(full) type", expected: "a numeric type", found: found)
        }
        return H5Dataset(id: d, path: path, name: full, type: element, shape: shape, file: file)
    }

    /// Reads a whole child dataset as `T` (HDF5 converts numeric types).
    public func read<T: H5Scalar>(_ childName: String, as: T.Type = T.self) throws -> [T] {
        let d = try openDataset(childName)
        defer { d.close() }
        return try d.read(as: T.self)
    }

    /// Closes the group id.
    public func close() {
        if id >= 0 { H5Library.quiet(); H5Gclose(id); id = -1 }
    }

    deinit { close() }
}
