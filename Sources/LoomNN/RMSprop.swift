import Foundation
import LoomTensor

/// RMSprop (Hinton's lecture 6e), PyTorch's update exactly (`torch.optim.RMSprop`, without
/// momentum, not centred; WGAN's optimizer):
///
///     g ← g + λ·p
///     v ← α·v + (1 − α)·g²
///     p ← p − lr · g / (√v + ε)
///
/// with ε outside the square root. State per parameter, as PyTorch names it:
/// `state.<name>.step`, `state.<name>.square_avg`.
public final class RMSprop: Optimizer {
    /// The parameter groups (learning rate and weight decay per group).
    public var groups: [ParameterGroup]
    /// Smoothing constant α of the squared-gradient average.
    public let alpha: Double
    /// Added to the denominator, outside the square root.
    public let eps: Double
    let states = ParameterStates(tensorNames: ["square_avg"], savesStep: true)

    /// RMSprop over `groups`.
    public init(groups: [ParameterGroup], alpha: Double = 0.99, eps: Double = 1e-8) {
        checkUniqueNames(groups)
        self.groups = groups
        self.alpha = alpha
        self.eps = eps
    }

    /// RMSprop over named parameters in one group (PyTorch's defaults).
    public convenience init(_ parameters: [(String, Tensor)], lr: Double = 1e-2, alpha: Double = 0.99,
                            eps: Double = 1e-8, weightDecay: Double = 0) {
        self.init(groups: [ParameterGroup(parameters, lr: lr, weightDecay: weightDecay)], alpha: alpha, eps: eps)
    }

    /// The number of updates parameter `name` has had.
    public func stepCount(of name: String) -> Int { states.entries[name]?.step ?? 0 }

    /// One RMSprop update of every parameter with a gradient.
    public func step() {
        for group in groups {
            for (name, p) in group.parameters {
                guard let g = p.grad else { continue }
                precondition(g.count == p.count, "RMSprop: gradient \(g.shape) for parameter \"\(name)\" \(p.shape)")
                let state = states.entry(name, like: p)
                state.step += 1
                update(p, g, state.tensors[0], lr: group.lr, weightDecay: group.weightDecay)
            }
        }
    }

    /// The fused update of one parameter.
    private func update(_ p: Tensor, _ g: Tensor, _ v: Tensor, lr: Double, weightDecay: Double) {
        let negLR = Float(-lr), wd = Float(weightDecay), epsF = Float(eps)
        let a = Float(alpha), oneMinusA = Float(1 - alpha)
        let pp = p.data, pg = g.data, pv = v.data
        forEachBlock16(p.count) { i, n in
            var x = load16(pp + i, n)
            var grad = load16(pg + i, n)
            if wd != 0 { grad = grad + wd * x }
            let average = load16(pv + i, n) * a + oneMinusA * (grad * grad)
            x = x + negLR * (grad / (average.squareRoot() + epsF))
            store16(average, pv + i, n)
            store16(x, pp + i, n)
        }
    }

    /// Step counts and squared-gradient averages of every parameter that has been updated (copies).
    public func stateTensors() -> [(String, Tensor)] { states.save(groups) }

    /// Restores `stateTensors()` output exactly; throws on unknown, missing or misshapen entries.
    public func loadState(_ state: [(String, Tensor)]) throws { try states.load(state, groups) }
}
