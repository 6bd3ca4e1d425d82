import Foundation
import LoomTensor

/// Adam (Kingma & Ba), with PyTorch's update exactly (`torch.optim.Adam`, single-tensor path):
///
///     g ← g + λ·p                          (L2 weight decay; AdamW instead: p ← p·(1 − lr·λ))
///     m ← lerp(m, g, 1 − β₁);  v ← β₂·v + (1 − β₂)·g²
///     p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// with ε outside the square root and t counted per parameter. State per parameter:
/// `state.<name>.step`, `state.<name>.exp_avg`, `state.<name>.exp_avg_sq`.
open class Adam: Optimizer {
    /// The parameter groups (learning rate and weight decay per group).
    public var groups: [ParameterGroup]
    /// Decay rate of the first moment.
    public let beta1: Double
    /// Decay rate of the second moment.
    public let beta2: Double
    /// Added to the denominator, outside the square root.
    public let eps: Double
    /// Whether weight decay shrinks the parameters directly (AdamW) instead of adding λ·p to the gradient.
    public let decoupledWeightDecay: Bool
    let states = ParameterStates(tensorNames: ["exp_avg", "exp_avg_sq"], savesStep: true)

    /// Adam over `groups`.
    public init(groups: [ParameterGroup], betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                decoupledWeightDecay: Bool = false) {
        checkUniqueNames(groups)
        self.groups = groups
        (beta1, beta2) = betas
        self.eps = eps
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    /// Adam over named parameters in one group (PyTorch's defaults).
    public convenience init(_ parameters: [(String, Tensor)], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                            eps: Double = 1e-8, weightDecay: Double = 0) {
        self.init(groups: [ParameterGroup(parameters, lr: lr, weightDecay: weightDecay)], betas: betas, eps: eps)
    }

    /// The number of updates parameter `name` has had.
    public func stepCount(of name: String) -> Int { states.entries[name]?.step ?? 0 }

    /// One Adam update of every parameter with a gradient.
    public func step() {
        for group in groups {
            for (name, p) in group.parameters {
                guard let g = p.grad else { continue }
                precondition(g.count == p.count, "Adam: gradient \(g.shape) for parameter \"\(name)\" \(p.shape)")
                let state = states.entry(name, like: p)
                state.step += 1
                update(p, g, state.tensors[0], state.tensors[1], step: state.step, lr: group.lr, weightDecay: group.weightDecay)
            }
        }
    }

    /// The fused update of one parameter; scalars are formed in double as PyTorch does in Python.
    private func update(_ p: Tensor, _ g: Tensor, _ m: Tensor, _ v: Tensor, step: Int, lr: Double, weightDecay: Double) {
        let t = Double(step)
        let biasCorrection1 = 1 - Foundation.pow(beta1, t)
        let biasCorrection2 = 1 - Foundation.pow(beta2, t)
        let negStepSize = Float(-(lr / biasCorrection1))
        let bc2Sqrt = Float(biasCorrection2.squareRoot())
        let epsF = Float(eps)
        let shrink: Float = decoupledWeightDecay ? Float(1 - lr * weightDecay) : 1
        let l2: Float = decoupledWeightDecay ? 0 : Float(weightDecay)
        // lerp(m, g, w) as ATen: m + w·(g − m) for |w| < 0.5, else g − (g − m)·(1 − w).
        let w1 = Float(1 - beta1), smallWeight = abs(w1) < 0.5, oneMinusW1 = 1 - w1
        let b2 = Float(beta2), w2 = Float(1 - beta2)
        let pp = p.data, pg = g.data, pm = m.data, pv = v.data
        forEachBlock16(p.count) { i, n in
            var x = load16(pp + i, n)
            var grad = load16(pg + i, n)
            if shrink != 1 { x = x * shrink }
            if l2 != 0 { grad = grad + l2 * x }
            var mean = load16(pm + i, n)
            mean = smallWeight ? mean + w1 * (grad - mean) : grad - (grad - mean) * oneMinusW1
            let variance = load16(pv + i, n) * b2 + w2 * grad * grad
            let denom = variance.squareRoot() / bc2Sqrt + epsF
            x = x + negStepSize * mean / denom
            store16(mean, pm + i, n)
            store16(variance, pv + i, n)
            store16(x, pp + i, n)
        }
    }

    /// Step counts and moments of every parameter that has been updated (copies).
    public func stateTensors() -> [(String, Tensor)] { states.save(groups) }

    /// Restores `stateTensors()` output exactly; throws on unknown, missing or misshapen entries.
    public func loadState(_ state: [(String, Tensor)]) throws { try states.load(state, groups) }
}

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay p ← p·(1 − lr·λ), applied
/// before the Adam step, as `torch.optim.AdamW` (default λ = 0.01).
public final class AdamW: Adam {
    /// AdamW over `groups`.
    public init(groups: [ParameterGroup], betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8) {
        super.init(groups: groups, betas: betas, eps: eps, decoupledWeightDecay: true)
    }

    /// AdamW over named parameters in one group (PyTorch's defaults).
    public convenience init(_ parameters: [(String, Tensor)], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                            eps: Double = 1e-8, weightDecay: Double = 1e-2) {
        self.init(groups: [ParameterGroup(parameters, lr: lr, weightDecay: weightDecay)], betas: betas, eps: eps)
    }
}
