import LoomTensor

/// Parameterless activation layers, so that `Sequential` chains (and their PyTorch indices,
/// `main.0`, `main.2`, …) can list them like `nn.ReLU()`, `nn.LeakyReLU(0.2)`, `nn.Tanh()`.

/// An activation layer that a preceding BatchNorm2d can apply in its own passes.
public protocol FusableActivation: Layer {
    /// The same activation as `batchNorm`'s fused one.
    var fused: FusedActivation { get }
}

/// max(x, 0) (PyTorch `nn.ReLU`).
public final class ReLU: Module, FusableActivation {
    /// A ReLU layer.
    public override init() { super.init() }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.relu() }
    public var fused: FusedActivation { .relu }
}

/// x for x > 0, slope·x otherwise (PyTorch `nn.LeakyReLU`; GAN discriminators use 0.2).
public final class LeakyReLU: Module, FusableActivation {
    /// The slope for negative inputs.
    public let slope: Float

    /// A leaky ReLU with `slope` (PyTorch's default 0.01).
    public init(_ slope: Float = 0.01) {
        self.slope = slope
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.leakyRelu(slope) }
    public var fused: FusedActivation { .leakyReLU(slope: slope) }
}

/// tanh(x) (PyTorch `nn.Tanh`; generator outputs in [-1, 1]).
public final class Tanh: Module, Layer {
    /// A tanh layer.
    public override init() { super.init() }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.tanh() }
}
