import LoomTensor

/// y = x·Wᵀ + b over the last axis (PyTorch `nn.Linear`; weight `[out, in]`).
public final class Linear: Module, Layer {
    @Parameter public var weight: Tensor
    @Parameter public var bias: Tensor?

    /// PyTorch's default initialisation (Kaiming-uniform weight, uniform ±1/√in bias).
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, stream: inout RandomStream) {
        let w = Tensor(uninitialized: [outFeatures, inFeatures])
        let b = bias ? Tensor(uninitialized: [outFeatures]) : nil
        Init.pytorchDefault(weight: w, bias: b, stream: &stream)
        _weight = Parameter(wrappedValue: w)
        _bias = Parameter(wrappedValue: b)
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }
}

/// A module that maps class indices to rows of vectors (`Embedding`, `SNEmbedding`).
public protocol EmbeddingLayer: Module {
    /// Rows `indices` of the table, `[indices.count, dimension]`.
    func callAsFunction(_ indices: [Int]) -> Tensor
}

/// A lookup table of `count` vectors (PyTorch `nn.Embedding`, N(0, 1) init).
public final class Embedding: Module, EmbeddingLayer {
    @Parameter public var weight: Tensor

    public init(_ count: Int, _ dimension: Int, stream: inout RandomStream) {
        let w = Tensor(uninitialized: [count, dimension])
        Init.normal(w, std: 1, stream: &stream)
        _weight = Parameter(wrappedValue: w)
        super.init()
    }

    /// Rows `indices` of the table, `[indices.count, dimension]`.
    public func callAsFunction(_ indices: [Int]) -> Tensor {
        let rows = weight.shape[0]
        precondition(indices.allSatisfy { (0..<rows).contains($0) }, "Embedding: index out of 0..<\(rows) in \(indices)")
        return weight.gatherRows(indices)
    }
}

/// A shared random stream for layers that draw during forward (dropout); the trainer owns
/// it and saves its state in checkpoints.
public final class RandomSource {
    /// The stream; each draw advances it.
    public var stream: RandomStream

    public init(_ stream: RandomStream) { self.stream = stream }
}

/// Inverted dropout in training mode, identity in eval mode.
public final class Dropout: Module, Layer {
    public let p: Float
    let source: RandomSource

    public init(_ p: Float, source: RandomSource) {
        precondition((0..<1).contains(p), "Dropout: p must be in [0, 1), got \(p)")
        self.p = p
        self.source = source
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard isTraining, p > 0 else { return x }
        return x.dropout(p: p, stream: &source.stream)
    }
}
