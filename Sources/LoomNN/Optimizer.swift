import Foundation
import LoomTensor

/// Parameters that share a learning rate and weight decay (PyTorch's `param_groups`; e.g. no
/// decay on normalisation scales and biases).
public struct ParameterGroup {
    /// The parameters with their (unique) names; the names key the optimizer's saved state.
    public let parameters: [(name: String, tensor: Tensor)]
    /// Learning rate, set by the schedule every step.
    public var lr: Double
    /// Weight decay (L2 for Adam and SGD, decoupled for AdamW).
    public var weightDecay: Double

    /// A group of named parameters (as `Module.namedParameters()` gives them).
    public init(_ parameters: [(String, Tensor)], lr: Double, weightDecay: Double = 0) {
        self.parameters = parameters.map { (name: $0.0, tensor: $0.1) }
        self.lr = lr
        self.weightDecay = weightDecay
    }
}

/// An optimizer: updates its parameters in place from their `.grad`, off the tape.
///
/// Hyperparameters are configuration and are not saved: a resumed run constructs the
/// optimizer as before (and its schedule sets the learning rate each step); `stateTensors()`
/// holds everything else, exactly.
public protocol Optimizer: AnyObject {
    /// The parameter groups; their `lr` and `weightDecay` may be changed between steps.
    var groups: [ParameterGroup] { get set }
    /// One update of every parameter that has a gradient (others are left untouched, with
    /// their state, as in PyTorch).
    func step()
    /// The per-parameter state as `state.<param name>.<key>` tensors (copies).
    func stateTensors() -> [(String, Tensor)]
    /// Replaces the state with `state` (from `stateTensors()`), checked before anything changes.
    func loadState(_ state: [(String, Tensor)]) throws
}

extension Optimizer {
    /// Sets every group's learning rate (from a schedule).
    public func setLearningRate(_ lr: Double) {
        for i in groups.indices { groups[i].lr = lr }
    }

    /// All parameters, group by group.
    public var parameters: [Tensor] { groups.flatMap { $0.parameters.map(\.tensor) } }

    /// Drops the gradients of all parameters.
    public func zeroGrad() {
        for t in parameters { t.grad = nil }
    }
}

/// Checks that parameter names are unique across groups (they key the state).
func checkUniqueNames(_ groups: [ParameterGroup]) {
    var seen = Set<String>()
    for g in groups {
        for p in g.parameters {
            precondition(seen.insert(p.name).inserted, "optimizer: parameter name \"\(p.name)\" appears twice")
        }
    }
}

/// Per-parameter optimizer state (moment tensors and a step count), keyed by parameter name,
/// with its exact save and load.
final class ParameterStates {
    /// One parameter's state.
    final class Entry {
        var step: Int
        let tensors: [Tensor]
        init(step: Int, tensors: [Tensor]) { self.step = step; self.tensors = tensors }
    }

    /// The names of the tensors each entry holds, e.g. ["exp_avg", "exp_avg_sq"].
    let tensorNames: [String]
    /// Whether the step count is saved (Adam's bias correction needs it; SGD has none).
    let savesStep: Bool
    var entries: [String: Entry] = [:]

    init(tensorNames: [String], savesStep: Bool) {
        self.tensorNames = tensorNames
        self.savesStep = savesStep
    }

    /// The entry for `name`, created with zero tensors shaped like `parameter` if absent.
    func entry(_ name: String, like parameter: Tensor) -> Entry {
        if let e = entries[name] { return e }
        let e = Entry(step: 0, tensors: tensorNames.map { _ in Tensor.zeros(parameter.shape) })
        entries[name] = e
        return e
    }

    func save(_ groups: [ParameterGroup]) -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for group in groups {
            for (name, _) in group.parameters {
                guard let e = entries[name] else { continue }
                if savesStep {
                    // Float holds integers exactly up to 2^24 steps.
                    precondition(e.step <= 1 << 24, "optimizer step \(e.step) exceeds what a float saves exactly")
                    out.append(("state.\(name).step", Tensor.scalar(Float(e.step))))
                }
                for (key, t) in zip(tensorNames, e.tensors) { out.append(("state.\(name).\(key)", t.copy())) }
            }
        }
        return out
    }

    func load(_ state: [(String, Tensor)], _ groups: [ParameterGroup]) throws {
        var given: [String: Tensor] = [:]
        for (key, t) in state {
            guard given.updateValue(t, forKey: key) == nil else { throw StateDictError.duplicateKey(key) }
        }
        var used = Set<String>()
        var missing: [String] = []
        var loaded: [String: Entry] = [:]
        for group in groups {
            for (name, p) in group.parameters {
                let keys = (savesStep ? ["step"] : []) + tensorNames
                let full = keys.map { "state.\(name).\($0)" }
                let present = full.filter { given[$0] != nil }
                if present.isEmpty { continue }  // never stepped
                used.formUnion(present)
                missing += full.filter { given[$0] == nil }
                guard present.count == full.count else { continue }
                var step = 1
                if savesStep {
                    let key = full[0], t = given[key]!
                    guard t.count == 1 else { throw StateDictError.shapeMismatch(key: key, expected: [], found: t.shape) }
                    let v = t.data[0]
                    guard v >= 0, v == v.rounded(), v <= Float(1 << 24) else {
                        throw StateDictError.invalidValue(key: key, reason: "step \(v) is not a non-negative integer")
                    }
                    step = Int(v)
                }
                let tensorKeys = full.suffix(tensorNames.count)
                for key in tensorKeys where given[key]!.shape != p.shape {
                    throw StateDictError.shapeMismatch(key: key, expected: p.shape, found: given[key]!.shape)
                }
                loaded[name] = Entry(step: step, tensors: tensorKeys.map { given[$0]!.copy() })
            }
        }
        let unexpected = state.map(\.0).filter { !used.contains($0) }
        if !missing.isEmpty || !unexpected.isEmpty {
            throw StateDictError.keyMismatch(missing: missing, unexpected: unexpected)
        }
        entries = loaded
    }
}

// MARK: - SIMD helpers for in-place updates

/// Calls `body(offset, width)` over `0..<count` in blocks of 16 (`width` < 16 only at the
/// end of a thread's range), split across threads. Updates are elementwise, so results do
/// not depend on the split.
@inline(__always)
func forEachBlock16(_ count: Int, _ body: (Int, Int) -> Void) {
    Parallel.forRange(count, grain: 1 << 14) { r in
        var i = r.lowerBound
        while i < r.upperBound {
            body(i, min(16, r.upperBound - i))
            i += 16
        }
    }
}

/// Loads `width` ≤ 16 floats, zero-padded.
@inline(__always)
func load16(_ p: UnsafeMutablePointer<Float>, _ width: Int) -> Float16x {
    if width == 16 { return UnsafeRawPointer(p).loadUnaligned(as: Float16x.self) }
    var v = Float16x(repeating: 0)
    for k in 0..<width { v[k] = p[k] }
    return v
}

/// Stores the first `width` ≤ 16 lanes.
@inline(__always)
func store16(_ v: Float16x, _ p: UnsafeMutablePointer<Float>, _ width: Int) {
    if width == 16 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float16x.self); return }
    for k in 0..<width { p[k] = v[k] }
}

// MARK: - Gradient clipping

/// Σ x² of a tensor in double precision, in fixed 4096-element blocks summed in order, so
/// the result does not depend on the thread count.
func sumOfSquares(_ t: Tensor) -> Double {
    let block = 4096, n = t.count, p = t.data
    let blocks = (n + block - 1) / block
    var partial = [Double](repeating: 0, count: blocks)
    partial.withUnsafeMutableBufferPointer { out in
        let o = out.baseAddress!
        Parallel.forRange(blocks, grain: 4) { r in
            for b in r {
                var acc = SIMD16<Double>(repeating: 0)
                var i = b * block
                let end = min(n, i + block)
                while i + 16 <= end {
                    let v = SIMD16<Double>(UnsafeRawPointer(p + i).loadUnaligned(as: Float16x.self))
                    acc += v * v
                    i += 16
                }
                var s = acc.sum()
                while i < end { s += Double(p[i]) * Double(p[i]); i += 1 }
                o[b] = s
            }
        }
    }
    return partial.reduce(0, +)
}

/// The L2 norm of all gradients together (parameters without a gradient count as zero).
public func globalGradNorm(_ parameters: [Tensor]) -> Double {
    parameters.reduce(0.0) { acc, t in acc + (t.grad.map(sumOfSquares) ?? 0) }.squareRoot()
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm`, as PyTorch's
/// `clip_grad_norm_`: coef = maxNorm / (norm + 1e-6), applied when below 1. The norm is
/// accumulated in double. Returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    let norm = globalGradNorm(parameters)
    let coef = Float(Double(maxNorm) / (norm + 1e-6))
    if coef < 1 {
        for t in parameters {
            guard let g = t.grad else { continue }
            let pg = g.data
            forEachBlock16(g.count) { i, w in store16(load16(pg + i, w) * coef, pg + i, w) }
        }
    }
    return Float(norm)
}
