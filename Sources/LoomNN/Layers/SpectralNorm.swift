import LoomTensor

/// Spectral normalisation (Miyato et al. 2018) exactly as PyTorch's hook-based
/// `torch.nn.utils.spectral_norm` does it, for weights seen as a matrix W = `weight_orig`
/// reshaped to `[rows, -1]` (rows = the weight's first axis: output channels of a conv,
/// output features of a linear layer, classes of an embedding).
///
/// State, under PyTorch's names: `weight_orig` (the trained parameter), and the buffers
/// `weight_u` `[rows]` and `weight_v` `[W's columns]`, unit estimates of W's first singular
/// vectors (drawn N(0, 1) and normalised at construction). Each forward in training mode first
/// runs one power iteration off the tape, in place,
///
///     v ← normalize(Wᵀu),  u ← normalize(W v)          (normalize(x) = x / max(‖x‖, 1e-12))
///
/// then uses W / σ with σ = uᵀ W v computed on the tape with u and v as constants, so the
/// gradient reaches `weight_orig` through σ as well (and second-order gradients work, for R1
/// and gradient penalties). Evaluation mode only reads u and v. Because u and v are buffers,
/// checkpoints, resumes and the start-of-run broadcast carry them exactly; replicas with equal
/// weights then iterate them identically.
public protocol SpectrallyNormalized: Module {
    /// The unnormalised weight (`weight_orig`).
    var weightOrig: Tensor { get }
    /// The left singular vector estimate (`weight_u`, `[rows]`).
    var weightU: Tensor { get }
    /// The right singular vector estimate (`weight_v`, `[weight count / rows]`).
    var weightV: Tensor { get }
}

/// PyTorch's guard against dividing by a zero norm in the power iteration.
let spectralNormEps: Float = 1e-12

extension SpectrallyNormalized {
    /// `weight_orig / σ`, after one power iteration in training mode (the weight a forward uses).
    public func normalizedWeight() -> Tensor {
        if isTraining { powerIteration() }
        // Copies, as PyTorch clones them: a graph kept for a later backward (createGraph) must
        // not see the next forward's in-place iteration.
        let u = weightU.copy(), v = weightV.copy()
        let rows = weightOrig.shape[0]
        let wv = matmul(weightOrig.reshaped([rows, -1]), v.reshaped([v.count, 1])).reshaped([rows])
        let sigma = (wv * u).sum()
        return weightOrig / sigma
    }

    /// σ = uᵀ W v from the stored vectors (no iteration), in double precision, off the tape:
    /// W's largest singular value once the iteration has converged.
    public var sigma: Double {
        let rows = weightU.count, columns = weightV.count
        let w = weightOrig.data, u = weightU.data, v = weightV.data
        var total = 0.0
        for i in 0..<rows {
            var row = 0.0
            for j in 0..<columns { row += Double(w[i * columns + j]) * Double(v[j]) }
            total += Double(u[i]) * row
        }
        return total
    }

    /// One power iteration, writing u and v in place, off the tape.
    func powerIteration() {
        noGrad {
            let rows = weightU.count, columns = weightV.count
            let matrix = weightOrig.reshaped([rows, columns])
            normalize(matmul(matrix, weightU.reshaped([rows, 1]), transposeA: true), into: weightV)
            normalize(matmul(matrix, weightV.reshaped([columns, 1])), into: weightU)
        }
    }
}

/// `target` ← x / max(‖x‖, eps) (same element count), the norm accumulated in double.
private func normalize(_ x: Tensor, into target: Tensor) {
    let p = x.data
    var squares = 0.0
    for i in 0..<x.count { squares += Double(p[i]) * Double(p[i]) }
    let scale = Float(1 / max(squares.squareRoot(), Double(spectralNormEps)))
    let out = target.data
    for i in 0..<x.count { out[i] = p[i] * scale }
}

/// A unit vector of `n` N(0, 1) draws (the initial u and v).
private func randomUnitVector(_ n: Int, stream: inout RandomStream) -> Tensor {
    let t = Tensor.normal([n], stream: &stream)
    normalize(t, into: t)
    return t
}

/// 2-D convolution with a spectrally normalised weight (PyTorch
/// `spectral_norm(nn.Conv2d(...))`): keys `bias`, `weight_orig`, `weight_u`, `weight_v`.
public final class SNConv2d: Module, Layer, SpectrallyNormalized {
    @Parameter public var bias: Tensor?
    @Parameter public var weightOrig: Tensor
    @Buffer public var weightU: Tensor
    @Buffer public var weightV: Tensor
    public let stride: Int
    public let padding: Int

    /// PyTorch's default initialisation of the convolution, then u and v from `stream`.
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, stream: inout RandomStream) {
        let w = Tensor(uninitialized: [outChannels, inChannels, kernel, kernel])
        let b = bias ? Tensor(uninitialized: [outChannels]) : nil
        Init.pytorchDefault(weight: w, bias: b, stream: &stream)
        _bias = Parameter(wrappedValue: b)
        _weightOrig = Parameter(wrappedValue: w, name: "weight_orig")
        _weightU = Buffer(wrappedValue: randomUnitVector(outChannels, stream: &stream), name: "weight_u")
        _weightV = Buffer(wrappedValue: randomUnitVector(inChannels * kernel * kernel, stream: &stream), name: "weight_v")
        self.stride = stride
        self.padding = padding
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv2d(x, weight: normalizedWeight(), bias: bias, stride: stride, padding: padding)
    }
}

/// y = x·(W/σ)ᵀ + b (PyTorch `spectral_norm(nn.Linear(...))`): keys `bias`, `weight_orig`,
/// `weight_u`, `weight_v`.
public final class SNLinear: Module, Layer, SpectrallyNormalized {
    @Parameter public var bias: Tensor?
    @Parameter public var weightOrig: Tensor
    @Buffer public var weightU: Tensor
    @Buffer public var weightV: Tensor

    /// PyTorch's default initialisation of the linear layer, then u and v from `stream`.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, stream: inout RandomStream) {
        let w = Tensor(uninitialized: [outFeatures, inFeatures])
        let b = bias ? Tensor(uninitialized: [outFeatures]) : nil
        Init.pytorchDefault(weight: w, bias: b, stream: &stream)
        _bias = Parameter(wrappedValue: b)
        _weightOrig = Parameter(wrappedValue: w, name: "weight_orig")
        _weightU = Buffer(wrappedValue: randomUnitVector(outFeatures, stream: &stream), name: "weight_u")
        _weightV = Buffer(wrappedValue: randomUnitVector(inFeatures, stream: &stream), name: "weight_v")
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: normalizedWeight(), bias: bias) }
}

/// A lookup table normalised by its largest singular value (PyTorch
/// `spectral_norm(nn.Embedding(...))`, the projection discriminator's class embedding): keys
/// `weight_orig` `[count, dimension]`, `weight_u` `[count]`, `weight_v` `[dimension]`.
public final class SNEmbedding: Module, EmbeddingLayer, SpectrallyNormalized {
    @Parameter public var weightOrig: Tensor
    @Buffer public var weightU: Tensor
    @Buffer public var weightV: Tensor

    /// N(0, 1) rows (as `nn.Embedding`), then u and v from `stream`.
    public init(_ count: Int, _ dimension: Int, stream: inout RandomStream) {
        let w = Tensor(uninitialized: [count, dimension])
        Init.normal(w, std: 1, stream: &stream)
        _weightOrig = Parameter(wrappedValue: w, name: "weight_orig")
        _weightU = Buffer(wrappedValue: randomUnitVector(count, stream: &stream), name: "weight_u")
        _weightV = Buffer(wrappedValue: randomUnitVector(dimension, stream: &stream), name: "weight_v")
        super.init()
    }

    /// Rows `indices` of W/σ, `[indices.count, dimension]` (one power iteration per call in training mode).
    public func callAsFunction(_ indices: [Int]) -> Tensor {
        let rows = weightOrig.shape[0]
        precondition(indices.allSatisfy { (0..<rows).contains($0) }, "SNEmbedding: index out of 0..<\(rows) in \(indices)")
        return normalizedWeight().gatherRows(indices)
    }
}
