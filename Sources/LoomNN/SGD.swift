import LoomTensor

/// Stochastic gradient descent with momentum, PyTorch's update exactly (`torch.optim.SGD`):
///
///     g ← g + λ·p
///     b ← g (first step),  b ← μ·b + (1 − τ)·g (later)      (only when μ ≠ 0)
///     d ← g + μ·b (Nesterov) or b,  p ← p − lr·d
///
/// The momentum buffer is the only state: `state.<name>.momentum_buffer`.
public final class SGD: Optimizer {
    /// The parameter groups (learning rate and weight decay per group).
    public var groups: [ParameterGroup]
    /// Momentum factor μ (0: plain SGD, no state).
    public let momentum: Double
    /// Dampening τ of the gradient added to the momentum buffer.
    public let dampening: Double
    /// Nesterov momentum (needs μ > 0 and τ = 0).
    public let nesterov: Bool
    let states = ParameterStates(tensorNames: ["momentum_buffer"], savesStep: false)

    /// SGD over `groups`.
    public init(groups: [ParameterGroup], momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum needs momentum > 0 and dampening 0")
        checkUniqueNames(groups)
        self.groups = groups
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
    }

    /// SGD over named parameters in one group.
    public convenience init(_ parameters: [(String, Tensor)], lr: Double, momentum: Double = 0, dampening: Double = 0,
                            weightDecay: Double = 0, nesterov: Bool = false) {
        self.init(groups: [ParameterGroup(parameters, lr: lr, weightDecay: weightDecay)],
                  momentum: momentum, dampening: dampening, nesterov: nesterov)
    }

    /// One SGD update of every parameter with a gradient.
    public func step() {
        for group in groups {
            for (name, p) in group.parameters {
                guard let g = p.grad else { continue }
                precondition(g.count == p.count, "SGD: gradient \(g.shape) for parameter \"\(name)\" \(p.shape)")
                var buffer: Tensor?
                var first = false
                if momentum != 0 {
                    let state = states.entry(name, like: p)
                    first = state.step == 0
                    state.step += 1
                    buffer = state.tensors[0]
                }
                update(p, g, buffer, first: first, lr: group.lr, weightDecay: group.weightDecay)
            }
        }
    }

    /// The fused update of one parameter.
    private func update(_ p: Tensor, _ g: Tensor, _ buffer: Tensor?, first: Bool, lr: Double, weightDecay: Double) {
        let negLR = Float(-lr), wd = Float(weightDecay)
        let mu = Float(momentum), keep = Float(1 - dampening), nesterov = self.nesterov
        let pp = p.data, pg = g.data, pb = buffer?.data
        forEachBlock16(p.count) { i, n in
            var x = load16(pp + i, n)
            var d = load16(pg + i, n)
            if wd != 0 { d = d + wd * x }
            if let pb {
                // The first step copies the gradient into the buffer, undampened (as PyTorch).
                let b = first ? d : load16(pb + i, n) * mu + keep * d
                store16(b, pb + i, n)
                d = nesterov ? d + mu * b : b
            }
            x = x + negLR * d
            store16(x, pp + i, n)
        }
    }

    /// Momentum buffers of every parameter that has been updated (copies).
    public func stateTensors() -> [(String, Tensor)] { states.save(groups) }

    /// Restores `stateTensors()` output exactly; throws on unknown, missing or misshapen entries.
    public func loadState(_ state: [(String, Tensor)]) throws { try states.load(state, groups) }
}
