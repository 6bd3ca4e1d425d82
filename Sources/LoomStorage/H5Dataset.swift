import CHDF5
import Foundation

/// An open HDF5 dataset: whole reads and writes, and hyperslabs of rows (first axis).
public final class H5Dataset: H5AttributeHolder, @unchecked Sendable {
    /// The HDF5 dataset id.
    public private(set) var id: hid_t
    /// The file's path.
    public let path: String
    /// The dataset's path inside the file.
    public let name: String
    /// The stored element type.
    public let type: H5ElementType
    /// Extent of each axis.
    public let shape: [Int]
    /// Keeps the file open while the dataset is in use.
    let file: H5File

    init(id: hid_t, path: String, name: String, type: H5ElementType, shape: [Int], file: H5File) {
        self.file = file
        self.id = id
        self.path = path
        self.name = name
        self.type = type
        self.shape = shape
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Elements in one row (the product of every axis but the first).
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }

    /// Chunk extents, or nil for a contiguous dataset.
    public var chunks: [Int]? {
        let dcpl = H5Dget_create_plist(id)
        defer { H5Pclose(dcpl) }
        guard H5Pget_layout(dcpl) == H5D_CHUNKED else { return nil }
        var dims = [hsize_t](repeating: 0, count: max(shape.count, 1))
        let n = H5Pget_chunk(dcpl, Int32(dims.count), &dims)
        return n > 0 ? dims.prefix(Int(n)).map { Int($0) } : nil
    }

    /// Number of chunks written (0 for a contiguous dataset).
    public func chunkCount() throws -> Int {
        guard chunks != nil else { return 0 }
        var n: hsize_t = 0
        // HDF5 1.10 rejects H5S_ALL here: pass the dataset's own (all-selected) space.
        let space = try H5Library.check(H5Dget_space(id), path, "count chunks of \(name)")
        defer { H5Sclose(space) }
        try H5Library.check(H5Dget_num_chunks(id, space, &n), path, "count chunks of \(name)")
        return Int(n)
    }

    /// Where chunk `index` (in storage order) lies in the file, in bytes: to verify or
    /// repair data with outside tools (and to test that corruption is detected).
    public func chunkByteRange(_ index: Int) throws -> Range<Int> {
        H5Library.quiet()
        var offset = [hsize_t](repeating: 0, count: max(shape.count, 1))
        var mask: UInt32 = 0
        var address: haddr_t = 0
        var size: hsize_t = 0
        let space = try H5Library.check(H5Dget_space(id), path, "locate chunk \(index) of \(name)")
        defer { H5Sclose(space) }
        try H5Library.check(H5Dget_chunk_info(id, space, hsize_t(index), &offset, &mask, &address, &size),
                            path, "locate chunk \(index) of \(name)")
        return Int(address)..<(Int(address) + Int(size))
    }

    /// Writes every element from `values` (same element count).
    public func write<T: H5Scalar>(_ values: [T]) throws {
        guard values.count == count else {
            throw StorageError.badArgument(name: "values for \(name)", value: "\(values.count) elements",
                                           expected: "\(count) for shape \(shape)")
        }
        if count == 0 { return }
        H5Library.quiet()
        try values.withUnsafeBytes { raw in
            try H5Library.check(H5Dwrite(id, T.h5Type.memoryType, loom_h5s_all(), loom_h5s_all(), H5Library.plist,
                                         raw.baseAddress), path, "write \(name)")
        }
    }

    /// Reads every element as `T`.
    public func read<T: H5Scalar>(as: T.Type = T.self) throws -> [T] {
        if count == 0 { return [] }
        H5Library.quiet()
        return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            try H5Library.check(H5Dread(id, T.h5Type.memoryType, loom_h5s_all(), loom_h5s_all(), H5Library.plist,
                                        buffer.baseAddress), path, "read \(name)")
            initialized = count
        }
    }

    /// Selects rows `start ..< start + rows` in the file and a matching memory space.
    private func rowSpaces(_ start: Int, _ rows: Int, _ operation: String) throws -> (file: hid_t, memory: hid_t) {
        guard !shape.isEmpty, start >= 0, rows >= 0, start + rows <= shape[0] else {
            throw StorageError.badArgument(name: "rows of \(path):\(name)", value: "\(start)..<\(start + rows)",
                                           expected: "within 0..<\(shape.first ?? 0)")
        }
        let fileSpace = try H5Library.check(H5Dget_space(id), path, operation)
        var offset = [hsize_t](repeating: 0, count: shape.count)
        offset[0] = hsize_t(start)
        var extent = shape.map { hsize_t($0) }
        extent[0] = hsize_t(rows)
        if H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &offset, nil, &extent, nil) < 0 {
            H5Sclose(fileSpace)
            throw H5Library.failure(path, operation)
        }
        let memorySpace = H5Screate_simple(Int32(extent.count), &extent, nil)
        if memorySpace < 0 {
            H5Sclose(fileSpace)
            throw H5Library.failure(path, operation)
        }
        return (fileSpace, memorySpace)
    }

    /// Writes rows `start ..< start + rows` from `source` (native elements of `type`).
    public func writeRows(_ start: Int, count rows: Int, from source: UnsafeRawPointer) throws {
        if rows == 0 { return }
        H5Library.quiet()
        let operation = "write rows \(start)..<\(start + rows) of \(name)"
        let (fileSpace, memorySpace) = try rowSpaces(start, rows, operation)
        defer { H5Sclose(fileSpace); H5Sclose(memorySpace) }
        try H5Library.check(H5Dwrite(id, type.memoryType, memorySpace, fileSpace, H5Library.plist, source), path, operation)
    }

    /// Reads rows `start ..< start + rows` into `destination` as native elements of `as`
    /// (default: the stored type); HDF5 converts between numeric types.
    public func readRows(_ start: Int, count rows: Int, into destination: UnsafeMutableRawPointer,
                         as memoryType: H5ElementType? = nil) throws {
        if rows == 0 { return }
        H5Library.quiet()
        let operation = "read rows \(start)..<\(start + rows) of \(name)"
        let (fileSpace, memorySpace) = try rowSpaces(start, rows, operation)
        defer { H5Sclose(fileSpace); H5Sclose(memorySpace) }
        try H5Library.check(H5Dread(id, (memoryType ?? type).memoryType, memorySpace, fileSpace, H5Library.plist,
                                    destination), path, operation)
    }

    /// Closes the dataset id.
    public func close() {
        if id >= 0 { H5Library.quiet(); H5Dclose(id); id = -1 }
    }

    deinit { close() }
}
