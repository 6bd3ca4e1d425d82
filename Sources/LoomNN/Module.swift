import Foundation
import LoomTensor

/// The base of every layer and model, like PyTorch's `nn.Module`: it names its parameters and
/// buffers hierarchically exactly as a PyTorch state dict does (`down.1.res.0.conv1.weight`),
/// switches train/eval mode for the whole tree, and saves and loads its state.
///
/// A subclass declares its state as stored properties, found by reflection once and cached:
/// `@Parameter` / `@Buffer` tensors, child modules (`Module`, `Module?`) and arrays of modules
/// (`[Module]`, named `name.0`, `name.1`, …). Other properties (plain tensors, numbers,
/// closures) are not state. The tree must be complete when first traversed (build it in `init`).
/// A container that names its children differently (e.g. `Sequential`) overrides `members()`.
open class Module {
    /// Whether the module is in training mode (dropout active, batch statistics); see `train(_:)`.
    public private(set) var isTraining = true
    private var memberCache: [(String, ModuleMember)]?

    /// A module in training mode.
    public init() {}

    /// This module's own members in order; by default its reflected stored properties.
    /// Override to declare children explicitly (called once, then cached).
    open func members() -> [(String, ModuleMember)] {
        reflectedMembers(of: self)
    }

    /// The cached result of `members()`.
    public final var namedMembers: [(String, ModuleMember)] {
        if let cached = memberCache { return cached }
        let m = members()
        memberCache = m
        return m
    }

    /// The direct child modules with their names.
    public final var namedChildren: [(String, Module)] {
        namedMembers.compactMap { name, member in
            if case .module(let m) = member { return (name, m) }
            return nil
        }
    }

    /// This module (named "") and every descendant, pre-order, each module once.
    public final func namedModules() -> [(String, Module)] {
        var out: [(String, Module)] = []
        var seen = Set<ObjectIdentifier>()
        var path = Set<ObjectIdentifier>()
        func visit(_ m: Module, _ prefix: String) {
            let id = ObjectIdentifier(m)
            precondition(path.insert(id).inserted, "module cycle at \"\(prefix)\": a module contains its ancestor")
            defer { path.remove(id) }
            guard seen.insert(id).inserted else { return }
            out.append((prefix, m))
            for (name, child) in m.namedChildren { visit(child, prefix.isEmpty ? name : prefix + "." + name) }
        }
        visit(self, "")
        return out
    }

    /// Every tensor slot under its full name in PyTorch's state-dict order: a module's own
    /// parameters, then its own buffers, then each child's entries. Shared tensors appear
    /// under every name; absent optional slots are skipped.
    final func namedSlots() -> [(String, TensorSlot, Tensor)] {
        var out: [(String, TensorSlot, Tensor)] = []
        var path = Set<ObjectIdentifier>()
        func visit(_ m: Module, _ prefix: String) {
            let id = ObjectIdentifier(m)
            precondition(path.insert(id).inserted, "module cycle at \"\(prefix)\": a module contains its ancestor")
            defer { path.remove(id) }
            let p = prefix.isEmpty ? "" : prefix + "."
            for wantParameters in [true, false] {
                for (name, member) in m.namedMembers {
                    if case .slot(let s) = member, s.isParameter == wantParameters, let t = s.tensor {
                        out.append((p + name, s, t))
                    }
                }
            }
            for (name, child) in m.namedChildren { visit(child, p + name) }
        }
        visit(self, "")
        return out
    }

    private func uniqueTensors(parameters: Bool) -> [(String, Tensor)] {
        var seen = Set<ObjectIdentifier>()
        return namedSlots().compactMap { name, slot, t in
            slot.isParameter == parameters && seen.insert(ObjectIdentifier(t)).inserted ? (name, t) : nil
        }
    }

    /// Trainable tensors with their full names, each tensor once (under its first name).
    public final func namedParameters() -> [(String, Tensor)] { uniqueTensors(parameters: true) }

    /// Buffers with their full names, each tensor once.
    public final func namedBuffers() -> [(String, Tensor)] { uniqueTensors(parameters: false) }

    /// The trainable tensors, each once.
    public final func parameters() -> [Tensor] { namedParameters().map(\.1) }

    /// Total number of trainable scalars.
    public final var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.1.count } }

    /// Sets training mode on this module and all its descendants.
    public final func train(_ on: Bool = true) {
        for (_, m) in namedModules() { m.isTraining = on }
    }

    /// Sets evaluation mode on this module and all its descendants.
    public final func eval() { train(false) }

    /// Drops every parameter's gradient (PyTorch's `set_to_none`: the buffers return to the pool;
    /// a data-parallel gradient stays in its all-reduce bucket for the next backward to overwrite).
    public final func zeroGrad() {
        for t in parameters() { t.grad = nil }
    }

    /// Switches gradients for all parameters on or off (freezing the discriminator during the
    /// generator update, so no weight gradients are computed for it).
    public final func requiresGrad(_ on: Bool) {
        for t in parameters() { t.requiresGrad = on }
    }

    /// Parameters and buffers under their full names, in PyTorch's order. The tensors are
    /// the module's own (no copy): write them out before the next update.
    public final func stateDict() -> [(String, Tensor)] {
        namedSlots().map { ($0.0, $0.2) }
    }

    /// Copies `state` into the module's tensors in place (so optimizers and EMA keep
    /// referring to them). Everything is checked before anything is written. Strict: every
    /// key must match. Non-strict: missing and unexpected keys are skipped and returned.
    /// Shape mismatches always throw.
    @discardableResult
    public final func loadStateDict(_ state: [(String, Tensor)], strict: Bool = true) throws
        -> (missing: [String], unexpected: [String]) {
        try assignState(state, into: stateDict(), strict: strict)
    }

    /// `loadStateDict` from a dictionary.
    @discardableResult
    public final func loadStateDict(_ state: [String: Tensor], strict: Bool = true) throws
        -> (missing: [String], unexpected: [String]) {
        try loadStateDict(state.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, strict: strict)
    }
}

/// Why a state dict (of a module, optimizer or EMA) could not be loaded.
public enum StateDictError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// Keys the receiver has that the state lacks, and keys the state has that it does not know.
    case keyMismatch(missing: [String], unexpected: [String])
    /// A tensor whose shape differs from the receiver's.
    case shapeMismatch(key: String, expected: [Int], found: [Int])
    /// The same key given twice.
    case duplicateKey(String)
    /// A value that cannot be right (e.g. a step count that is not a non-negative integer).
    case invalidValue(key: String, reason: String)

    /// A message naming the offending keys.
    public var description: String {
        func list(_ keys: [String]) -> String { keys.map { "\"\($0)\"" }.joined(separator: ", ") }
        switch self {
        case let .keyMismatch(missing, unexpected):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing key(s) \(list(missing))") }
            if !unexpected.isEmpty { parts.append("unexpected key(s) \(list(unexpected))") }
            return "state dict does not match: " + parts.joined(separator: "; ")
        case let .shapeMismatch(key, expected, found):
            return "state dict shape mismatch for \"\(key)\": expected \(expected), found \(found)"
        case let .duplicateKey(key):
            return "state dict has key \"\(key)\" more than once"
        case let .invalidValue(key, reason):
            return "state dict value for \"\(key)\" is invalid: \(reason)"
        }
    }

    /// Same as `description`, for Foundation's error printing.
    public var errorDescription: String? { description }
}

/// Copies `state` into the live tensors `live` (a module's state dict, an EMA's shadows …)
/// in place, after checking everything: duplicate keys and shape mismatches always throw;
/// strict: every key must match, non-strict: missing and unexpected keys are skipped and
/// returned. Nothing is written when a check fails.
@discardableResult
public func assignState(_ state: [(String, Tensor)], into live: [(String, Tensor)], strict: Bool = true) throws
    -> (missing: [String], unexpected: [String]) {
    var given: [String: Tensor] = [:]
    for (key, t) in state {
        guard given.updateValue(t, forKey: key) == nil else { throw StateDictError.duplicateKey(key) }
    }
    let liveKeys = Set(live.map(\.0))
    let missing = live.map(\.0).filter { given[$0] == nil }
    let unexpected = state.map(\.0).filter { !liveKeys.contains($0) }
    if strict && !(missing.isEmpty && unexpected.isEmpty) {
        throw StateDictError.keyMismatch(missing: missing, unexpected: unexpected)
    }
    for (key, t) in live {
        if let src = given[key], src.shape != t.shape {
            throw StateDictError.shapeMismatch(key: key, expected: t.shape, found: src.shape)
        }
    }
    for (key, t) in live { if let src = given[key], src !== t { t.assign(src) } }
    return (missing, unexpected)
}
