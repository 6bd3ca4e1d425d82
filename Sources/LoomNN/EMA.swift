import LoomTensor

/// An exponential moving average of a module's parameters, for sampling with smoothed
/// weights: shadow ← shadow + (1 − d)·(param − shadow) after each optimizer step (PyTorch's
/// `lerp_` form), while buffers (BatchNorm running statistics) are copied, not averaged.
///
/// The shadows carry the module's own names, so `stateDict()` loads into a second instance
/// of the model (`copy(into:)`). Updates run in place with SIMD loops, off the tape.
public final class EMA {
    /// How the averaging starts, when the early weights are far from the final ones.
    public enum Warmup: Equatable, Sendable {
        /// Decay `decay` from the first update.
        case none
        /// Updates before update number `step` (0-based) copy the parameters instead.
        case copyBefore(step: Int)
        /// Decay min(decay, (1 + n) / (10 + n)) with n the number of updates including this
        /// one (latent diffusion's `LitEma`): 2/11 at the first update, rising to `decay`.
        case ramp
    }

    /// The target decay.
    public let decay: Float
    /// How the averaging starts.
    public let warmup: Warmup
    /// Updates made so far (part of the saved state).
    public private(set) var updates = 0
    /// The averaged parameters, under the module's names.
    public let shadowParameters: [(String, Tensor)]
    /// The copied buffers, under the module's names.
    public let shadowBuffers: [(String, Tensor)]
    private let sourceParameters: [Tensor]
    private let sourceBuffers: [Tensor]

    /// Shadows of `module`'s current parameters and buffers (copies).
    public init(of module: Module, decay: Float, warmup: Warmup = .none) {
        precondition(decay >= 0 && decay <= 1, "EMA decay \(decay) outside [0, 1]")
        self.decay = decay
        self.warmup = warmup
        let params = module.namedParameters(), buffers = module.namedBuffers()
        sourceParameters = params.map(\.1)
        sourceBuffers = buffers.map(\.1)
        shadowParameters = params.map { ($0.0, $0.1.copy()) }
        shadowBuffers = buffers.map { ($0.0, $0.1.copy()) }
    }

    /// Sets the update count (resuming from a checkpoint's counters).
    public func resume(updates: Int) { self.updates = max(0, updates) }

    /// The decay used by update number `index` (0-based): 0 means copy.
    public func decay(forUpdate index: Int) -> Float {
        switch warmup {
        case .none: return decay
        case .copyBefore(let step): return index < step ? 0 : decay
        case .ramp:
            let n = Float(index + 1)
            return min(decay, (1 + n) / (10 + n))
        }
    }

    /// Folds the module's current parameters into the shadows and copies its buffers.
    public func update() {
        let d = decay(forUpdate: updates)
        updates += 1
        let w = 1 - d
        for ((_, shadow), source) in zip(shadowParameters, sourceParameters) {
            let ps = shadow.data, pp = source.data
            if d == 0 { ps.update(from: pp, count: shadow.count); continue }
            forEachBlock16(shadow.count) { i, n in
                let s = load16(ps + i, n)
                store16(s + w * (load16(pp + i, n) - s), ps + i, n)
            }
        }
        for ((_, shadow), source) in zip(shadowBuffers, sourceBuffers) { shadow.assign(source) }
    }

    /// The shadows as a state dict of the module (parameters then buffers), loadable into
    /// another instance of the model. Live tensors, not copies.
    public func stateDict() -> [(String, Tensor)] { shadowParameters + shadowBuffers }

    /// Writes the shadows into `module` (an instance of the same model, e.g. for sampling).
    public func copy(into module: Module) throws {
        try module.loadStateDict(stateDict())
    }

    /// Everything to resume exactly: the shadows (copies) and `num_updates`.
    public func stateTensors() -> [(String, Tensor)] {
        precondition(updates <= 1 << 24, "EMA update count \(updates) exceeds what a float saves exactly")
        return stateDict().map { ($0.0, $0.1.copy()) } + [("num_updates", Tensor.scalar(Float(updates)))]
    }

    /// Restores `stateTensors()` output; checked before anything changes.
    public func load(_ state: [(String, Tensor)]) throws {
        var given: [String: Tensor] = [:]
        for (key, t) in state {
            guard given.updateValue(t, forKey: key) == nil else { throw StateDictError.duplicateKey(key) }
        }
        let mine = stateDict()
        let keys = Set(mine.map(\.0) + ["num_updates"])
        let missing = (mine.map(\.0) + ["num_updates"]).filter { given[$0] == nil }
        let unexpected = state.map(\.0).filter { !keys.contains($0) }
        if !missing.isEmpty || !unexpected.isEmpty {
            throw StateDictError.keyMismatch(missing: missing, unexpected: unexpected)
        }
        for (key, t) in mine where given[key]!.shape != t.shape {
            throw StateDictError.shapeMismatch(key: key, expected: t.shape, found: given[key]!.shape)
        }
        let count = given["num_updates"]!
        guard count.count == 1, count.data[0] >= 0, count.data[0] == count.data[0].rounded() else {
            throw StateDictError.invalidValue(key: "num_updates", reason: "not a non-negative integer: \(count)")
        }
        for (key, t) in mine { t.assign(given[key]!) }
        updates = Int(count.data[0])
    }
}
