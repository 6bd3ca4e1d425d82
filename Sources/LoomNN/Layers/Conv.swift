import LoomTensor

/// 2-D convolution over NHWC activations (weight `[out, in, k, k]` as PyTorch `nn.Conv2d`).
public final class Conv2d: Module, Layer {
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor?
    public let stride: Int
    public let padding: Int

    /// PyTorch's default initialisation.
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, stream: inout RandomStream) {
        let w = Tensor(uninitialized: [outChannels, inChannels, kernel, kernel])
        let b = bias ? Tensor(uninitialized: [outChannels]) : nil
        Init.pytorchDefault(weight: w, bias: b, stream: &stream)
        _weight = Parameter(wrappedValue: w)
        _bias = Parameter(wrappedValue: b)
        self.stride = stride
        self.padding = padding
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}

/// 2-D transposed convolution (weight `[in, out, k, k]` as PyTorch `nn.ConvTranspose2d`).
public final class ConvTranspose2d: Module, Layer {
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor?
    public let stride: Int
    public let padding: Int
    public let outputPadding: Int

    /// PyTorch's default initialisation.
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                outputPadding: Int = 0, bias: Bool = true, stream: inout RandomStream) {
        let w = Tensor(uninitialized: [inChannels, outChannels, kernel, kernel])
        let b = bias ? Tensor(uninitialized: [outChannels]) : nil
        Init.pytorchDefault(weight: w, bias: b, stream: &stream)
        _weight = Parameter(wrappedValue: w)
        _bias = Parameter(wrappedValue: b)
        self.stride = stride
        self.padding = padding
        self.outputPadding = outputPadding
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        convTranspose2d(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding)
    }
}
