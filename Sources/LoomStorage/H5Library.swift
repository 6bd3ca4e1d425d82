import CHDF5
import Foundation

/// Process-wide HDF5 set-up and error-stack handling shared by the wrapper types.
///
/// HDF5 prints its whole error stack to stderr on every failed call unless told not to, and
/// in a thread-safe build that setting lives in each thread's own error stack: `quiet()`
/// therefore runs at every entry point, on whichever thread calls.
enum H5Library {
    /// `H5P_DEFAULT` as an id (it imports as `Int32`).
    static var plist: hid_t { loom_h5p_default() }

    /// Turns off HDF5's automatic error printing for the calling thread.
    @inline(__always)
    static func quiet() {
        _ = setUp
        H5Eset_auto2(0, nil, nil)
    }

    /// Once, before HDF5's first call: no clean-up at exit. A file whose flush or close failed
    /// (a full disk) stays open inside HDF5 with dirty metadata, and HDF5's atexit clean-up
    /// then flushes it again and crashes (SIGSEGV in H5_term_library after "No space left on
    /// device"). Loom closes every file it writes explicitly, so nothing needs that clean-up.
    private static let setUp: Void = { _ = H5dont_atexit() }()

    /// A typed error for a failed HDF5 call, carrying the innermost message of HDF5's error
    /// stack (the most specific cause, e.g. a checksum or inflate failure), then clears it.
    static func failure(_ path: String, _ operation: String) -> StorageError {
        let detail = innermostMessage()
        H5Eclear2(0)
        return .hdf5(path: path, operation: operation, detail: detail)
    }

    /// Most specific and least specific descriptions on the current error stack.
    static func innermostMessage() -> String {
        final class Collected { var messages: [String] = [] }
        let box = Collected()
        let walker: H5E_walk2_t = { _, desc, data in
            guard let desc, let data else { return 0 }
            let box = Unmanaged<Collected>.fromOpaque(data).takeUnretainedValue()
            var text = desc.pointee.desc.map { String(cString: $0) } ?? ""
            if text.isEmpty, let f = desc.pointee.func_name { text = String(cString: f) }
            // The minor message says what kind of failure it was ("unable to open file").
            var buffer = [CChar](repeating: 0, count: 256)
            var kind = H5E_MINOR
            if H5Eget_msg(desc.pointee.min_num, &kind, &buffer, 256) > 0 {
                let minor = String(cString: buffer)
                if !minor.isEmpty && !text.contains(minor) { text += " (\(minor))" }
            }
            box.messages.append(text)
            return 0
        }
        let context = Unmanaged.passUnretained(box).toOpaque()
        _ = H5Ewalk2(0, H5E_WALK_UPWARD, walker, context)
        withExtendedLifetime(box) {}
        guard let first = box.messages.first else { return "" }
        // HDF5's system-error messages contain a newline; errors are one line.
        return first.replacingOccurrences(of: "\n", with: " ")
    }

    /// Runs an id-returning HDF5 call; throws a typed error when it fails.
    @inline(__always)
    static func check(_ id: hid_t, _ path: String, _ operation: @autoclosure () -> String) throws -> hid_t {
        if id < 0 { throw failure(path, operation()) }
        return id
    }

    /// Runs a status-returning HDF5 call; throws a typed error when it fails.
    @inline(__always)
    static func check(_ status: herr_t, _ path: String, _ operation: @autoclosure () -> String) throws {
        if status < 0 { throw failure(path, operation()) }
    }

    /// Whether the loaded HDF5 serialises its own calls (Debian's build does), so the loader's
    /// prefetch thread and the training thread may both use it.
    static var isThreadSafe: Bool {
        var safe: hbool_t = false
        return H5is_library_threadsafe(&safe) >= 0 && safe
    }
}

extension StorageNative {
    /// Whether the loaded HDF5 was built thread-safe (the prefetch thread relies on it).
    public static var hdf5ThreadSafe: Bool { H5Library.isThreadSafe }
}
