import LoomTensor

/// A module whose forward pass maps one tensor to one tensor, so it can be chained.
public protocol Layer: Module {
    /// The forward pass.
    func callAsFunction(_ x: Tensor) -> Tensor
}

/// Layers applied in order, named `0`, `1`, … with no prefix, like PyTorch's `nn.Sequential`
/// (a parameterless layer still takes its index, so `Sequential(linear, silu, linear)` names
/// `0.weight` and `2.weight`, matching PyTorch's keys).
public final class Sequential: Module, Layer {
    /// The layers, in application order.
    public let layers: [any Layer]

    /// Chains `layers`.
    public init(_ layers: [any Layer]) {
        self.layers = layers
        super.init()
    }

    /// Chains `layers`.
    public convenience init(_ layers: any Layer...) { self.init(layers) }

    /// The layers under their indices (the reason this container overrides reflection).
    public override func members() -> [(String, ModuleMember)] {
        layers.enumerated().map { ("\($0.offset)", .module($0.element)) }
    }

    /// Applies every layer in turn; a BatchNorm2d followed by ReLU or LeakyReLU runs as one
    /// fused op (the same values, one pass through memory fewer each way).
    public func callAsFunction(_ x: Tensor) -> Tensor { callAsFunction(x, layers: layers.indices) }

    /// Applies the layers in `range` in turn, fused as above (e.g. all but the last).
    public func callAsFunction(_ x: Tensor, layers range: Range<Int>) -> Tensor {
        var y = x, i = range.lowerBound
        while i < range.upperBound {
            if let norm = layers[i] as? BatchNorm2d, i + 1 < range.upperBound,
               let act = layers[i + 1] as? any FusableActivation {
                y = norm(y, then: act.fused)
                i += 2
            } else {
                y = layers[i](y)
                i += 1
            }
        }
        return y
    }
}
