import CHDF5
import Foundation

/// String and numeric attributes on groups and datasets. Strings are stored as variable-length
/// UTF-8 (h5py reads them as `str`); fixed-length strings written by other tools read too.
extension H5AttributeHolder {
    private func label(_ attribute: String) -> String { "attribute \(name == "/" ? "" : name)@\(attribute)" }

    /// Whether attribute `attribute` exists.
    public func hasAttribute(_ attribute: String) -> Bool {
        H5Library.quiet()
        let r = H5Aexists(id, attribute)
        if r < 0 { H5Eclear2(0) }
        return r > 0
    }

    /// Names of every attribute, in creation order.
    public func attributeNames() throws -> [String] {
        H5Library.quiet()
        var info = H5O_info_t()
        try H5Library.check(H5Oget_info2(id, &info, UInt32(H5O_INFO_NUM_ATTRS)), path, "list attributes of \(name)")
        var names: [String] = []
        for i in 0..<info.num_attrs {
            let n = H5Aget_name_by_idx(id, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nil, 0, H5Library.plist)
            let size: Int
            if n < 0 {  // objects without creation-order tracking: fall back to name order
                H5Eclear2(0)
                size = Int(H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, H5Library.plist))
                var buffer = [CChar](repeating: 0, count: size + 1)
                _ = H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, size + 1, H5Library.plist)
                names.append(String(cString: buffer))
            } else {
                size = Int(n)
                var buffer = [CChar](repeating: 0, count: size + 1)
                _ = H5Aget_name_by_idx(id, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, &buffer, size + 1, H5Library.plist)
                names.append(String(cString: buffer))
            }
        }
        return names
    }

    // MARK: writing

    /// Creates (replacing any old one) attribute `attribute` with a dataspace of `count`
    /// elements (nil: scalar) and runs `write` on its id.
    private func createAttribute(_ attribute: String, type: hid_t, count: Int?, _ write: (hid_t) -> herr_t) throws {
        H5Library.quiet()
        if hasAttribute(attribute) {
            try H5Library.check(H5Adelete(id, attribute), path, "replace \(label(attribute))")
        }
        let space: hid_t
        if let count {
            var dims = [hsize_t(count)]
            space = H5Screate_simple(1, &dims, nil)
        } else {
            space = H5Screate(H5S_SCALAR)
        }
        _ = try H5Library.check(space, path, "create dataspace for \(label(attribute))")
        defer { H5Sclose(space) }
        let a = try H5Library.check(H5Acreate2(id, attribute, type, space, H5Library.plist, H5Library.plist),
                                    path, "create \(label(attribute))")
        defer { H5Aclose(a) }
        try H5Library.check(write(a), path, "write \(label(attribute))")
    }

    private func numbers<T: H5Scalar>(_ attribute: String, _ values: [T], scalar: Bool) throws {
        try createAttribute(attribute, type: T.h5Type.fileType, count: scalar ? nil : values.count) { a in
            values.withUnsafeBytes { H5Awrite(a, T.h5Type.memoryType, $0.baseAddress) }
        }
    }

    /// Sets an integer attribute (int64).
    public func setAttribute(_ attribute: String, _ value: Int) throws { try numbers(attribute, [value], scalar: true) }
    /// Sets a float attribute (float64).
    public func setAttribute(_ attribute: String, _ value: Double) throws { try numbers(attribute, [value], scalar: true) }
    /// Sets a one-dimensional integer array attribute (int64).
    public func setAttribute(_ attribute: String, _ values: [Int]) throws { try numbers(attribute, values, scalar: false) }
    /// Sets a one-dimensional float array attribute (float64).
    public func setAttribute(_ attribute: String, _ values: [Double]) throws { try numbers(attribute, values, scalar: false) }

    private func strings(_ attribute: String, _ values: [String], scalar: Bool) throws {
        let type = H5Tcopy(loom_h5t_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, loom_h5t_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        let cStrings = values.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = cStrings.map { UnsafePointer($0) }
        try createAttribute(attribute, type: type, count: scalar ? nil : values.count) { a in
            H5Awrite(a, type, &pointers)
        }
    }

    /// Sets a string attribute (variable-length UTF-8).
    public func setAttribute(_ attribute: String, _ value: String) throws { try strings(attribute, [value], scalar: true) }
    /// Sets a one-dimensional string array attribute (variable-length UTF-8).
    public func setAttribute(_ attribute: String, _ values: [String]) throws { try strings(attribute, values, scalar: false) }

    // MARK: reading

    /// Opens `attribute` and passes its id, type and element count to `body`.
    private func withAttribute<R>(_ attribute: String, expected: String, _ body: (hid_t, hid_t, Int) throws -> R) throws -> R {
        H5Library.quiet()
        guard hasAttribute(attribute) else {
            throw StorageError.schema(path: path, key: label(attribute), expected: expected, found: "missing")
        }
        let a = try H5Library.check(H5Aopen(id, attribute, H5Library.plist), path, "open \(label(attribute))")
        defer { H5Aclose(a) }
        let type = H5Aget_type(a)
        defer { H5Tclose(type) }
        let space = H5Aget_space(a)
        defer { H5Sclose(space) }
        let n = Int(H5Sget_simple_extent_npoints(space))
        // Loom's attributes hold a few values; a damaged dataspace in a file without object
        // header checksums (written before format 1.10) could claim billions.
        guard (0...65_536).contains(n) else {
            throw StorageError.schema(path: path, key: label(attribute), expected: "at most 65536 values", found: "\(n) (a damaged file?)")
        }
        return try body(a, type, n)
    }

    private func readNumbers<T: H5Scalar>(_ attribute: String, as: T.Type, expected: String) throws -> [T] {
        try withAttribute(attribute, expected: expected) { a, type, n in
            let cls = H5Tget_class(type)
            guard cls == H5T_INTEGER || cls == H5T_FLOAT else {
                throw StorageError.schema(path: path, key: label(attribute), expected: expected,
                                          found: H5ElementType.describe(type))
            }
            var values = [T](unsafeUninitializedCapacity: n) { _, c in c = n }
            try values.withUnsafeMutableBytes { raw in
                try H5Library.check(H5Aread(a, T.h5Type.memoryType, raw.baseAddress), path, "read \(label(attribute))")
            }
            return values
        }
    }

    /// Reads a scalar (or one-element) integer attribute.
    public func intAttribute(_ attribute: String) throws -> Int {
        let v = try readNumbers(attribute, as: Int.self, expected: "an integer")
        guard v.count == 1 else {
            throw StorageError.schema(path: path, key: label(attribute), expected: "one integer", found: "\(v.count) values")
        }
        return v[0]
    }

    /// Reads an integer array attribute.
    public func intsAttribute(_ attribute: String) throws -> [Int] {
        try readNumbers(attribute, as: Int.self, expected: "integers")
    }

    /// Reads a scalar (or one-element) float attribute.
    public func doubleAttribute(_ attribute: String) throws -> Double {
        let v = try readNumbers(attribute, as: Double.self, expected: "a number")
        guard v.count == 1 else {
            throw StorageError.schema(path: path, key: label(attribute), expected: "one number", found: "\(v.count) values")
        }
        return v[0]
    }

    /// Reads a float array attribute.
    public func doublesAttribute(_ attribute: String) throws -> [Double] {
        try readNumbers(attribute, as: Double.self, expected: "numbers")
    }

    /// Reads a string array attribute (variable- or fixed-length).
    public func stringsAttribute(_ attribute: String) throws -> [String] {
        try withAttribute(attribute, expected: "strings") { a, type, n in
            guard H5Tget_class(type) == H5T_STRING else {
                throw StorageError.schema(path: path, key: label(attribute), expected: "strings",
                                          found: H5ElementType.describe(type))
            }
            let memoryType = H5Tcopy(loom_h5t_c_s1())
            defer { H5Tclose(memoryType) }
            if H5Tis_variable_str(type) > 0 {
                H5Tset_size(memoryType, loom_h5t_variable())
                H5Tset_cset(memoryType, H5Tget_cset(type))
                var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
                try H5Library.check(H5Aread(a, memoryType, &pointers), path, "read \(label(attribute))")
                let result = pointers.map { $0.map { String(cString: $0) } ?? "" }
                let space = H5Aget_space(a)
                H5Dvlen_reclaim(memoryType, space, H5Library.plist, &pointers)
                H5Sclose(space)
                return result
            }
            let size = H5Tget_size(type)
            H5Tset_size(memoryType, size)
            var bytes = [CChar](repeating: 0, count: n * size + 1)
            try H5Library.check(H5Aread(a, memoryType, &bytes), path, "read \(label(attribute))")
            return (0..<n).map { i in
                let slice = bytes[(i * size)..<((i + 1) * size)].prefix { $0 != 0 }
                return String(decoding: slice.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
    }

    /// Reads a scalar string attribute.
    public func stringAttribute(_ attribute: String) throws -> String {
        let v = try stringsAttribute(attribute)
        guard v.count == 1 else {
            throw StorageError.schema(path: path, key: label(attribute), expected: "one string", found: "\(v.count) strings")
        }
        return v[0]
    }
}
