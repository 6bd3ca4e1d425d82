import Foundation
import Yams

/// A mistake in a run config or an override, with the key's full path.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case unknownKey(file: String, path: String, suggestion: String?)
    case wrongType(file: String, path: String, expected: String, found: String)
    case invalidValue(file: String, path: String, reason: String)
    case badOverride(String)
    case notForFamily(file: String, path: String, modelType: String)
    /// The model as a whole does not fit: `keys` are the ones that size it.
    case tooLarge(file: String, keys: [String], reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "\(file): cannot read the config: \(reason)"
        case let .unknownKey(file, path, suggestion):
            return "\(file): unknown key '\(path)'" + (suggestion.map { "; did you mean '\($0)'?" } ?? "")
        case let .wrongType(file, path, expected, found):
            return "\(file): '\(path)' must be \(expected), found \(found)"
        case let .invalidValue(file, path, reason): return "\(file): '\(path)' \(reason)"
        case let .notForFamily(file, path, modelType):
            return "\(file): '\(path)' does not apply to model.type \(modelType)"
        case let .tooLarge(file, keys, reason):
            return "\(file): \(keys.map { "'\($0)'" }.joined(separator: ", ")) \(reason)"
        case let .badOverride(text):
            return "override '\(text)' must look like key.path=value (e.g. optimizer.lr=1e-4)"
        }
    }
}

/// A YAML scalar or list a config key can hold.
public protocol ConfigValue {
    /// Parses a YAML node, or returns nil when it has the wrong type.
    static func parse(_ node: Node) -> Self?
    /// What the error message calls this type.
    static var typeName: String { get }
    /// The value as YAML (for the resolved config).
    var node: Node { get }
}

extension Int: ConfigValue {
    public static func parse(_ node: Node) -> Int? { node.scalar.flatMap { Int($0.string.replacingOccurrences(of: "_", with: "")) } }
    public static var typeName: String { "an integer" }
    public var node: Node { Node(String(self)) }
}

extension Double: ConfigValue {
    public static func parse(_ node: Node) -> Double? { node.scalar.flatMap { Double($0.string) } }
    public static var typeName: String { "a number" }
    public var node: Node { Node("\(self)") }
}

extension Bool: ConfigValue {
    public static func parse(_ node: Node) -> Bool? {
        switch node.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }
    public static var typeName: String { "true or false" }
    public var node: Node { Node(self ? "true" : "false") }
}

extension String: ConfigValue {
    public static func parse(_ node: Node) -> String? { node.scalar?.string }
    public static var typeName: String { "a string" }
    public var node: Node { Node(self, .implicit, .doubleQuoted) }
}

extension Array: ConfigValue where Element: ConfigValue {
    public static func parse(_ node: Node) -> [Element]? {
        guard let seq = node.sequence else { return nil }
        var out: [Element] = []
        for item in seq { guard let v = Element.parse(item) else { return nil }; out.append(v) }
        return out
    }
    public static var typeName: String { "a list of \(Element.typeName.replacingOccurrences(of: "an ", with: "").replacingOccurrences(of: "a ", with: ""))s" }
    public var node: Node { Node(map(\.node), .implicit, .flow) }
}

/// Reads one mapping of a config, remembering which keys it read so that any other key is
/// reported as unknown (with the nearest valid key), and recording the values it resolved.
public final class ConfigReader {
    let file: String
    let path: String
    let mapping: Node.Mapping?
    private(set) var readKeys: [String] = []
    private(set) var resolved: [(String, Node)] = []

    /// A reader over `node` (a mapping, or nil for "all defaults").
    public init(_ node: Node?, file: String, path: String = "") throws {
        self.file = file
        self.path = path
        if let node, node.mapping == nil, !(node.scalar?.string.isEmpty ?? false) && node != Node("null") {
            throw ConfigError.wrongType(file: file, path: path.isEmpty ? "(top level)" : path,
                                        expected: "a mapping of keys", found: describe(node))
        }
        self.mapping = node?.mapping
    }

    func fullPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The value of `key`, or `defaultValue` when absent.
    public func value<T: ConfigValue>(_ key: String, default defaultValue: T) throws -> T {
        readKeys.append(key)
        var result = defaultValue
        if let node = mapping?[key], node != Node("~"), node.scalar?.string != "null" {
            guard let v = T.parse(node) else {
                throw ConfigError.wrongType(file: file, path: fullPath(key), expected: T.typeName, found: describe(node))
            }
            result = v
        }
        resolved.append((key, result.node))
        return result
    }

    /// The value of `key` checked by `valid`, which returns an error text or nil.
    public func value<T: ConfigValue>(_ key: String, default defaultValue: T, _ valid: (T) -> String?) throws -> T {
        let v = try value(key, default: defaultValue)
        if let reason = valid(v) { throw ConfigError.invalidValue(file: file, path: fullPath(key), reason: reason) }
        return v
    }

    /// One of an enumeration's raw values.
    public func choice<T: RawRepresentable & CaseIterable>(_ key: String, default defaultValue: T) throws -> T where T.RawValue == String {
        let raw = try value(key, default: defaultValue.rawValue)
        guard let v = T(rawValue: raw) else {
            let options = T.allCases.map { $0.rawValue }
            let near = nearest(raw, in: options).map { "; did you mean '\($0)'?" } ?? ""
            throw ConfigError.invalidValue(file: file, path: fullPath(key),
                                           reason: "must be one of \(options.joined(separator: ", ")), found '\(raw)'\(near)")
        }
        return v
    }

    /// A nested mapping; `body` reads it, and its unknown keys are reported after.
    public func section<R>(_ key: String, _ body: (ConfigReader) throws -> R) throws -> R {
        readKeys.append(key)
        let child = try ConfigReader(mapping?[key], file: file, path: fullPath(key))
        let r = try body(child)
        try child.finish()
        resolved.append((key, child.resolvedNode))
        return r
    }

    /// The keys of this mapping that nobody has read (yet).
    public var unreadKeys: [String] {
        guard let mapping else { return [] }
        return mapping.map { $0.key.scalar?.string ?? "\($0.key)" }.filter { !readKeys.contains($0) }
    }

    /// Throws for the first key of this mapping that nobody read.
    public func finish() throws {
        guard let mapping else { return }
        for (k, _) in mapping {
            let key = k.scalar?.string ?? "\(k)"
            if !readKeys.contains(key) {
                throw ConfigError.unknownKey(file: file, path: fullPath(key),
                                             suggestion: nearest(key, in: readKeys).map(fullPath))
            }
        }
    }

    /// Every key read, with its effective value, as a YAML mapping.
    public var resolvedNode: Node { Node(resolved.map { (Node($0.0), $0.1) }) }
}

/// Range checks for `ConfigReader.value(_:default:_:)`: each returns an error text or nil.
enum Valid {
    /// An integer in `range`. Every size key has an upper bound, so that no product of sizes
    /// overflows and no absurd size reaches an allocation (README, "Config limits").
    static func within(_ range: ClosedRange<Int>) -> (Int) -> String? {
        { range.contains($0) ? nil : "must be between \(range.lowerBound) and \(range.upperBound), found \($0)" }
    }
    /// A finite number above zero.
    static func positiveNumber(_ v: Double) -> String? { v.isFinite && v > 0 ? nil : "must be a finite number above 0, found \(v)" }
    /// A positive number that float32 holds without becoming 0 or infinity (the optimizers and
    /// the losses compute in float32: 1e-300 would silently become 0).
    static func positiveFloat(_ v: Double) -> String? {
        v >= 1e-30 && v <= 1e30 ? nil : "must be a number between 1e-30 and 1e30 (float32), found \(v)"
    }
    /// A finite number of zero or more.
    static func nonNegativeNumber(_ v: Double) -> String? { v.isFinite && v >= 0 ? nil : "must be a finite number of 0 or more, found \(v)" }
    /// A number in [0, 1).
    static func fraction(_ v: Double) -> String? { v >= 0 && v < 1 ? nil : "must be in [0, 1), found \(v)" }
    /// A number in [0, 1].
    static func unit(_ v: Double) -> String? { v >= 0 && v <= 1 ? nil : "must be in [0, 1], found \(v)" }
    /// One of `options`, with the nearest one suggested.
    static func oneOf(_ options: [String]) -> (String) -> String? {
        { v in
            options.contains(v) ? nil : "must be one of \(options.joined(separator: ", ")), found '\(v)'"
                + (nearest(v, in: options).map { "; did you mean '\($0)'?" } ?? "")
        }
    }
}

/// Sets `path` (dotted) to `value` (parsed as YAML) in `root`, creating mappings on the way.
public func applyOverride(_ text: String, to root: Node?) throws -> Node {
    guard let eq = text.firstIndex(of: "="), eq != text.startIndex else { throw ConfigError.badOverride(text) }
    let keys = text[..<eq].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    guard !keys.isEmpty, !keys.contains(where: \.isEmpty) else { throw ConfigError.badOverride(text) }
    let raw = String(text[text.index(after: eq)...])
    let value = (try? Yams.compose(yaml: raw)) ?? nil ?? Node(raw)
    func set(_ node: Node?, _ keys: ArraySlice<String>) -> Node {
        guard let key = keys.first else { return value }
        var pairs = node?.mapping.map { Array($0).map { ($0.key, $0.value) } } ?? []
        if let i = pairs.firstIndex(where: { $0.0.scalar?.string == key }) {
            pairs[i].1 = set(pairs[i].1, keys.dropFirst())
        } else {
            pairs.append((Node(key), set(nil, keys.dropFirst())))
        }
        return Node(pairs)
    }
    return set(root, keys[...])
}

/// The candidate closest to `word` by edit distance, if reasonably close.
func nearest(_ word: String, in candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var prev = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[b.count]
    }
    let w = Array(word.lowercased())
    let scored = candidates.map { ($0, distance(w, Array($0.lowercased()))) }.min { $0.1 < $1.1 }
    guard let best = scored, best.1 <= max(2, w.count / 3) else { return nil }
    return best.0
}

func describe(_ node: Node) -> String {
    switch node {
    case .scalar(let s): return "'\(s.string)'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .alias: return "an alias"
    }
}
