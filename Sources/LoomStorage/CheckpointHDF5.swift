import CHDF5
import Foundation

// HDF5 pieces only checkpoints need: groups that remember the order their members were
// written in (a state dict's order survives a round trip), unsigned 64-bit datasets (RNG
// keys and counters) and a text dataset (the run config), with raw-pointer reads and writes.

extension H5Group {
    /// Creates a child group that tracks link creation order, so `orderedChildren()` returns
    /// members in the order they were written (h5dump still lists them by name).
    func createOrderedGroup(_ childName: String) throws -> H5Group {
        H5Library.quiet()
        let full = child(childName)
        // A copy of this group's creation properties is a group-creation list to start from.
        let gcpl = try H5Library.check(H5Gget_create_plist(id), path, "create properties for \(full)")
        defer { H5Pclose(gcpl) }
        let flags = UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED)
        try H5Library.check(H5Pset_link_creation_order(gcpl, flags), path, "track order in \(full)")
        let g = try H5Library.check(H5Gcreate2(id, childName, H5Library.plist, gcpl, H5Library.plist),
                                    path, "create group \(full)")
        return H5Group(id: g, path: path, name: full, file: file)
    }

    /// Member names in creation order when the group tracks it, else in name order.
    func orderedChildren() throws -> [String] {
        if let names = try linkNames(in: H5_INDEX_CRT_ORDER) { return names }
        H5Eclear2(0)  // the group does not track creation order
        return try children()
    }

    /// Writes `values` (row-major, `shape` = `[rows, columns]`) as a little-endian uint64
    /// dataset with a Fletcher-32 checksum.
    func writeUInt64(_ childName: String, values: [UInt64], shape: [Int]) throws {
        H5Library.quiet()
        let full = child(childName)
        precondition(values.count == shape.reduce(1, *))
        var dims = shape.map { hsize_t($0) }
        let space = try H5Library.check(H5Screate_simple(Int32(shape.count), &dims, nil), path, "create dataspace for \(full)")
        defer { H5Sclose(space) }
        let dcpl = try H5Library.check(H5Pcreate(loom_h5p_dataset_create()), path, "create properties for \(full)")
        defer { H5Pclose(dcpl) }
        if !values.isEmpty {
            try H5Library.check(H5Pset_chunk(dcpl, Int32(dims.count), &dims), path, "set chunks of \(full)")
            try H5Library.check(H5Pset_fletcher32(dcpl), path, "set Fletcher-32 on \(full)")
        }
        let d = try H5Library.check(H5Dcreate2(id, childName, loom_h5t_std_u64le(), space, H5Library.plist, dcpl, H5Library.plist),
                                    path, "create dataset \(full)")
        defer { H5Dclose(d) }
        if values.isEmpty { return }
        try values.withUnsafeBytes { raw in
            try H5Library.check(H5Dwrite(d, loom_h5t_native_uint64(), loom_h5s_all(), loom_h5s_all(), H5Library.plist,
                                         raw.baseAddress), path, "write \(full)")
        }
    }

    /// Opens dataset `childName`, which must exist; returns its id (close it) and full name.
    private func openRequired(_ childName: String) throws -> (hid_t, String) {
        H5Library.quiet()
        let full = child(childName)
        guard contains(childName) else {
            throw StorageError.schema(path: path, key: "dataset \(full)", expected: "present", found: "missing")
        }
        return (try H5Library.check(H5Dopen2(id, childName, H5Library.plist), path, "open dataset \(full)"), full)
    }

    /// Reads a uint64 dataset: its values (row-major) and shape.
    func readUInt64(_ childName: String) throws -> (values: [UInt64], shape: [Int]) {
        let (d, full) = try openRequired(childName)
        defer { H5Dclose(d) }
        let type = H5Dget_type(d)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_INTEGER, H5Tget_size(type) == 8, H5Tget_sign(type) == H5T_SGN_NONE else {
            throw StorageError.schema(path: path, key: "dataset \(full) type", expected: "uint64", found: H5ElementType.describe(type))
        }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        let shape = dims.prefix(rank).map { Int($0) }
        let count = shape.reduce(1, *)
        var values = [UInt64](repeating: 0, count: count)
        if count > 0 {
            try values.withUnsafeMutableBytes { raw in
                try H5Library.check(H5Dread(d, loom_h5t_native_uint64(), loom_h5s_all(), loom_h5s_all(), H5Library.plist,
                                            raw.baseAddress), path, "read \(full)")
            }
        }
        return (values, shape)
    }

    /// Writes `text` as a scalar variable-length UTF-8 string dataset (h5dump prints it as
    /// text; h5py reads it with `.asstr()[()]`).
    func writeText(_ childName: String, _ text: String) throws {
        H5Library.quiet()
        let full = child(childName)
        let type = H5Tcopy(loom_h5t_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, loom_h5t_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        let space = try H5Library.check(H5Screate(H5S_SCALAR), path, "create dataspace for \(full)")
        defer { H5Sclose(space) }
        let d = try H5Library.check(H5Dcreate2(id, childName, type, space, H5Library.plist, H5Library.plist, H5Library.plist),
                                    path, "create dataset \(full)")
        defer { H5Dclose(d) }
        let c = strdup(text)
        defer { free(c) }
        var pointer: UnsafePointer<CChar>? = UnsafePointer(c)
        try H5Library.check(H5Dwrite(d, type, loom_h5s_all(), loom_h5s_all(), H5Library.plist, &pointer), path, "write \(full)")
    }

    /// Reads a scalar string dataset written by `writeText`.
    func readText(_ childName: String) throws -> String {
        let (d, full) = try openRequired(childName)
        defer { H5Dclose(d) }
        let stored = H5Dget_type(d)
        defer { H5Tclose(stored) }
        guard H5Tget_class(stored) == H5T_STRING, H5Tis_variable_str(stored) > 0 else {
            throw StorageError.schema(path: path, key: "dataset \(full) type", expected: "a variable-length string",
                                      found: H5ElementType.describe(stored))
        }
        let type = H5Tcopy(loom_h5t_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, loom_h5t_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        var pointer: UnsafeMutablePointer<CChar>?
        try H5Library.check(H5Dread(d, type, loom_h5s_all(), loom_h5s_all(), H5Library.plist, &pointer), path, "read \(full)")
        let text = pointer.map { String(cString: $0) } ?? ""
        let space = H5Dget_space(d)
        H5Dvlen_reclaim(type, space, H5Library.plist, &pointer)
        H5Sclose(space)
        return text
    }
}

extension H5Dataset {
    /// Writes every element from `source` (native elements of `type`, `count` of them).
    func writeAll(from source: UnsafeRawPointer) throws {
        if count == 0 { return }
        H5Library.quiet()
        try H5Library.check(H5Dwrite(id, type.memoryType, loom_h5s_all(), loom_h5s_all(), H5Library.plist, source),
                            path, "write \(name)")
    }

    /// Reads every element into `destination` as native elements of `type`.
    func readAll(into destination: UnsafeMutableRawPointer) throws {
        if count == 0 { return }
        H5Library.quiet()
        try H5Library.check(H5Dread(id, type.memoryType, loom_h5s_all(), loom_h5s_all(), H5Library.plist, destination),
                            path, "read \(name)")
    }
}
