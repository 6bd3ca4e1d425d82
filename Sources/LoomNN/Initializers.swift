import Foundation
import LoomTensor

/// Weight initialisers, filling a tensor in place off the tape (PyTorch's `nn.init.*_`),
/// seeded by an explicit `RandomStream` so that runs are reproducible.
public enum Init {
    /// (fan in, fan out) as PyTorch computes them: for a weight of shape `[A, B, k…]`,
    /// fanIn = B·∏k and fanOut = A·∏k. That is right for linear `[out, in]` and conv
    /// `[O, I, kh, kw]`; for a transposed conv `[I, O, kh, kw]` it gives PyTorch's own
    /// (swapped) values, which its default initialisation uses too.
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        precondition(shape.count >= 2, "fan in and fan out need a weight of rank ≥ 2, got \(shape)")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// Which fan a Kaiming initialisation preserves the variance of.
    public enum FanMode: Sendable {
        /// Forward activations (PyTorch's default).
        case fanIn
        /// Backward gradients.
        case fanOut
    }

    /// Uniform values in [low, high).
    public static func uniform(_ t: Tensor, low: Float, high: Float, stream: inout RandomStream) {
        stream.fillUniform(t.data, count: t.count)
        let p = t.data, scale = high - low
        for i in 0..<t.count { p[i] = low + scale * p[i] }
    }

    /// Normal values with `mean` and `std` (DCGAN's N(0, 0.02)).
    public static func normal(_ t: Tensor, mean: Float = 0, std: Float, stream: inout RandomStream) {
        stream.fillNormal(t.data, count: t.count)
        let p = t.data
        for i in 0..<t.count { p[i] = mean + std * p[i] }
    }

    /// Every element set to `value`.
    public static func constant(_ t: Tensor, _ value: Float) { t.data.update(repeating: value, count: t.count) }

    /// Zeros (biases, adaLN-Zero modulation).
    public static func zeros(_ t: Tensor) { constant(t, 0) }

    /// Ones (normalisation scales).
    public static func ones(_ t: Tensor) { constant(t, 1) }

    /// PyTorch's `calculate_gain("leaky_relu", a)`: √(2 / (1 + a²)); a = 0 is ReLU's √2.
    public static func leakyReLUGain(_ a: Double) -> Double { (2 / (1 + a * a)).squareRoot() }

    /// Kaiming (He) uniform: U(±gain·√3 / √fan) with the leaky-ReLU gain for slope `a`.
    /// The default a = √5 is what PyTorch's `Linear` and `Conv*d` use, giving U(±1/√fanIn).
    public static func kaimingUniform(_ t: Tensor, a: Double = 5.0.squareRoot(), mode: FanMode = .fanIn,
                                      stream: inout RandomStream) {
        let (fanIn, fanOut) = fans(t.shape)
        // Scalars in double, as PyTorch computes them in Python.
        let fan = Double(mode == .fanIn ? fanIn : fanOut)
        let bound = Float(3.0.squareRoot() * leakyReLUGain(a) / fan.squareRoot())
        uniform(t, low: -bound, high: bound, stream: &stream)
    }

    /// Kaiming (He) normal: N(0, (gain / √fan)²) with the leaky-ReLU gain for slope `a`.
    public static func kaimingNormal(_ t: Tensor, a: Double = 0, mode: FanMode = .fanIn, stream: inout RandomStream) {
        let (fanIn, fanOut) = fans(t.shape)
        let fan = Double(mode == .fanIn ? fanIn : fanOut)
        normal(t, std: Float(leakyReLUGain(a) / fan.squareRoot()), stream: &stream)
    }

    /// Xavier (Glorot) uniform: U(±gain·√(6 / (fanIn + fanOut))) (DiT's linear layers).
    public static func xavierUniform(_ t: Tensor, gain: Double = 1, stream: inout RandomStream) {
        let (fanIn, fanOut) = fans(t.shape)
        let bound = Float(gain * (6 / Double(fanIn + fanOut)).squareRoot())
        uniform(t, low: -bound, high: bound, stream: &stream)
    }

    /// Xavier (Glorot) normal: N(0, gain²·2 / (fanIn + fanOut)).
    public static func xavierNormal(_ t: Tensor, gain: Double = 1, stream: inout RandomStream) {
        let (fanIn, fanOut) = fans(t.shape)
        normal(t, std: Float(gain * (2 / Double(fanIn + fanOut)).squareRoot()), stream: &stream)
    }

    /// PyTorch's default bias of a layer whose weight has `fanIn`: U(±1/√fanIn) (zeros if fanIn = 0).
    public static func defaultBias(_ bias: Tensor, fanIn: Int, stream: inout RandomStream) {
        let bound: Float = fanIn > 0 ? Float(1 / Double(fanIn).squareRoot()) : 0
        uniform(bias, low: -bound, high: bound, stream: &stream)
    }

    /// PyTorch's `reset_parameters()` of `Linear` and `Conv*d`/`ConvTranspose*d`: the weight
    /// kaiming-uniform(a = √5), then the bias U(±1/√fanIn) with the weight's fanIn.
    public static func pytorchDefault(weight: Tensor, bias: Tensor?, stream: inout RandomStream) {
        kaimingUniform(weight, stream: &stream)
        if let bias { defaultBias(bias, fanIn: fans(weight.shape).fanIn, stream: &stream) }
    }
}
