import Foundation

/// A storage failure caused by a file or an argument, never by a bug: each message is one line
/// naming the file (and key or value) and what was expected, so the CLI can print it as it is.
public enum StorageError: Error, CustomStringConvertible, Equatable {
    /// A file or folder that should exist does not; `hint` says how to get it.
    case missing(path: String, hint: String)
    /// A path that must not exist yet does.
    case alreadyExists(path: String)
    /// An operating-system call failed on `path`.
    case io(path: String, operation: String, reason: String)
    /// A file is shorter than its description says.
    case truncated(path: String, expectedBytes: Int, actualBytes: Int)
    /// An HDF5 call failed; `detail` is the innermost message from HDF5's error stack.
    case hdf5(path: String, operation: String, detail: String)
    /// A file's content disagrees with the format: `key` had `found`, `expected` was wanted.
    case schema(path: String, key: String, expected: String, found: String)
    /// The file was written by a newer or unknown format version.
    case unsupportedVersion(path: String, found: Int, supported: [Int])
    /// A source file (idx, CIFAR, PNG) is malformed.
    case badInput(path: String, detail: String)
    /// An option value is out of range.
    case badArgument(name: String, value: String, expected: String)

    /// The one-line message the CLI prints.
    public var description: String {
        switch self {
        case let .missing(path, hint):
            return "\(path): not found" + (hint.isEmpty ? "" : " (\(hint))")
        case let .alreadyExists(path):
            return "\(path): already exists (remove it or pass --overwrite)"
        case let .io(path, operation, reason):
            return "\(path): \(operation) failed: \(reason)"
        case let .truncated(path, expected, actual):
            return "\(path): truncated: \(actual) bytes, expected \(expected)"
        case let .hdf5(path, operation, detail):
            return "\(path): \(operation) failed" + (detail.isEmpty ? "" : ": \(detail)")
        case let .schema(path, key, expected, found):
            return "\(path): \(key) is \(found), expected \(expected)"
        case let .unsupportedVersion(path, found, supported):
            return "\(path): format version \(found) is not supported (known: \(supported.map(String.init).joined(separator: ", ")))"
        case let .badInput(path, detail):
            return "\(path): \(detail)"
        case let .badArgument(name, value, expected):
            return "\(name) \(value): expected \(expected)"
        }
    }

    /// Whether the failure was a full disk (ENOSPC, or HDF5 reporting it).
    public var isDiskFull: Bool {
        description.contains(String(cString: strerror(ENOSPC))) || description.contains("errno = 28")
    }

    /// The current `errno` as an `.io` error.
    static func posix(_ path: String, _ operation: String, _ code: Int32 = errno) -> StorageError {
        .io(path: path, operation: operation, reason: String(cString: strerror(code)))
    }
}
