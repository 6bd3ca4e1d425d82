import Foundation
import LoomNN
import LoomTensor

/// Shape of a DiT (defaults: workload W2, `dit-s`: 32×32×1, patch 4, hidden 192, depth 6,
/// 3 heads, 10 classes).
public struct DiTConfig: Equatable, Sendable {
    public var imageSize = 32
    public var inChannels = 1
    public var patchSize = 4
    public var hiddenSize = 192
    public var depth = 6
    public var heads = 3
    public var mlpRatio = 4.0
    /// Number of classes; 0 = unconditional. A conditional model has one more embedding row,
    /// the null class of classifier-free guidance.
    public var classes = 10
    /// Whether the output has twice `inChannels` (a learned variance per element after the
    /// prediction, `diffusion.learn_sigma`).
    public var learnSigma = false

    public init() {}

    /// Channels of the output image.
    public var outChannels: Int { inChannels * (learnSigma ? 2 : 1) }

    /// The paper's model sizes (Peebles & Xie, table 1): depth, hidden size, heads.
    public static let presets: [String: (depth: Int, hidden: Int, heads: Int)] = [
        "S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16),
    ]

    /// Width of the sinusoidal timestep features the timestep MLP reads.
    public static let timestepFrequencies = 256

    /// Tokens per side of the patch grid.
    public var gridSize: Int { imageSize / patchSize }
}

/// The diffusion transformer of Peebles & Xie (facebookresearch/DiT `models.py`), NHWC in and
/// out: patchify (conv k = s = patch) + fixed 2-D sin-cos positions → `depth` adaLN-Zero
/// blocks conditioned on c = timestep embedding + class embedding → final adaLN layer →
/// unpatchify. State-dict names follow the reference (`blocks.0.attn.qkv.weight`).
public final class DiT: Module {
    public let config: DiTConfig
    /// Unused by DiT (no dropout layers); kept so every denoiser has one stream to save.
    public let dropoutRandom = RandomSource(RandomStream(key: 0))
    let xEmbedder: Conv2d
    let tEmbedder: DiTTimestepEmbedder
    let yEmbedder: Embedding?
    /// The adaLN-Zero blocks, in order.
    public let blocks: [DiTBlock]
    let finalLayer: DiTFinalLayer
    /// `[1, T, hidden]`, fixed (not a parameter).
    let positions: Tensor

    /// Initialised as the reference's `initialize_weights`: xavier-uniform Linear weights
    /// and zero biases, the patch conv xavier-uniform as a matrix, N(0, 0.02) class table and
    /// timestep MLP, and zero adaLN modulations and output layer (adaLN-Zero).
    public init(_ c: DiTConfig, stream: inout RandomStream) {
        config = c
        let d = c.hiddenSize
        xEmbedder = Conv2d(c.inChannels, d, kernel: c.patchSize, stride: c.patchSize, stream: &stream)
        tEmbedder = DiTTimestepEmbedder(width: d, stream: &stream)
        yEmbedder = c.classes > 0 ? Embedding(c.classes + 1, d, stream: &stream) : nil
        blocks = (0..<c.depth).map { _ in DiTBlock(d, heads: c.heads, mlpRatio: c.mlpRatio, stream: &stream) }
        finalLayer = DiTFinalLayer(d, outputs: c.patchSize * c.patchSize * c.outChannels, stream: &stream)
        positions = sinCosPositions2D(dimension: d, gridSize: c.gridSize).reshaped([1, c.gridSize * c.gridSize, d])
        super.init()

        // The reference's _basic_init, then its special cases, in its order.
        for (name, p) in namedParameters() {
            if name.hasSuffix(".weight") && p.rank == 2 && !name.hasPrefix("y_embedder") { Init.xavierUniform(p, stream: &stream) }
            if name.hasSuffix(".bias") { Init.zeros(p) }
        }
        // The patch conv as a [hidden, C·p·p] matrix: the same fans as its 4-D shape.
        Init.xavierUniform(xEmbedder.weight.reshaped([d, c.inChannels * c.patchSize * c.patchSize]), stream: &stream)
        Init.zeros(xEmbedder.bias!)
        if let yEmbedder { Init.normal(yEmbedder.weight, std: 0.02, stream: &stream) }
        Init.normal(tEmbedder.linear1.weight, std: 0.02, stream: &stream)
        Init.normal(tEmbedder.linear2.weight, std: 0.02, stream: &stream)
        for block in blocks {
            Init.zeros(block.adaLN.weight)
            Init.zeros(block.adaLN.bias!)
        }
        Init.zeros(finalLayer.adaLN.weight)
        Init.zeros(finalLayer.adaLN.bias!)
        Init.zeros(finalLayer.linear.weight)
        Init.zeros(finalLayer.linear.bias!)
    }

    public override func members() -> [(String, ModuleMember)] {
        var m: [(String, ModuleMember)] = [("x_embedder", .module(xEmbedder)), ("t_embedder", .module(tEmbedder))]
        if let yEmbedder { m.append(("y_embedder", .module(yEmbedder))) }
        m += blocks.enumerated().map { ("blocks.\($0.offset)", .module($0.element)) }
        m.append(("final_layer", .module(finalLayer)))
        return m
    }

    /// Predicts ε for images `x` `[N, H, W, C]` at timesteps `t` (`labels`: class per image,
    /// `classes` meaning the null class; nil = unconditional).
    public func callAsFunction(_ x: Tensor, timesteps t: [Int], labels: [Int]? = nil) -> Tensor {
        let c = config, n = x.shape[0], g = c.gridSize
        precondition(x.shape == [n, c.imageSize, c.imageSize, c.inChannels],
                     "DiT expects [N, \(c.imageSize), \(c.imageSize), \(c.inChannels)], got \(x.shape)")
        var h = xEmbedder(x).reshaped([n, g * g, c.hiddenSize]) + positions   // [N, T, D]
        var cond = tEmbedder(t)                                               // [N, D]
        if let yEmbedder { cond = cond + yEmbedder(labels ?? Array(repeating: c.classes, count: n)) }
        for block in blocks { h = block(h, cond) }
        return Self.unpatchify(finalLayer(h, cond), gridSize: g, patchSize: c.patchSize, channels: c.outChannels)
    }

    /// `[N, g², p·p·C]` tokens → `[N, g·p, g·p, C]` images: token (i, j), entry (a, b, ch) →
    /// pixel (i·p + a, j·p + b), channel ch (the reference's einsum `nhwpqc->nchpwq`).
    public static func unpatchify(_ h: Tensor, gridSize g: Int, patchSize p: Int, channels: Int) -> Tensor {
        let n = h.shape[0]
        return h.reshaped([n, g, g, p, p, channels]).permuted([0, 1, 3, 2, 4, 5]).reshaped([n, g * p, g * p, channels])
    }
}

/// sinusoidal(256) → Linear → SiLU → Linear, as the reference's `TimestepEmbedder`.
final class DiTTimestepEmbedder: Module {
    static let frequencies = DiTConfig.timestepFrequencies
    let linear1: Linear
    let linear2: Linear

    init(width: Int, stream: inout RandomStream) {
        linear1 = Linear(Self.frequencies, width, stream: &stream)
        linear2 = Linear(width, width, stream: &stream)
        super.init()
    }

    override func members() -> [(String, ModuleMember)] { [("mlp.0", .module(linear1)), ("mlp.2", .module(linear2))] }

    func callAsFunction(_ t: [Int]) -> Tensor {
        linear2(linear1(sinusoidalEmbedding(t, dimension: Self.frequencies)).silu())
    }
}

/// Multi-head self-attention as timm's `Attention`: one qkv Linear, softmax(qkᵀ/√d)v, proj.
final class DiTAttention: Module {
    let heads: Int
    let qkv: Linear
    let proj: Linear

    init(_ d: Int, heads: Int, stream: inout RandomStream) {
        self.heads = heads
        qkv = Linear(d, 3 * d, stream: &stream)
        proj = Linear(d, d, stream: &stream)
        super.init()
    }

    /// The reference reshapes qkv(x) to [N, T, 3, H, hd] and permutes it into q, k and v;
    /// `packedSelfAttention` reads those head slices in place.
    func callAsFunction(_ x: Tensor) -> Tensor {
        proj(packedSelfAttention(qkv(x), heads: heads))
    }
}

/// fc1 → GELU(tanh) → fc2, as timm's `Mlp`.
final class DiTMLP: Module {
    let fc1: Linear
    let fc2: Linear

    init(_ d: Int, hidden: Int, stream: inout RandomStream) {
        fc1 = Linear(d, hidden, stream: &stream)
        fc2 = Linear(hidden, d, stream: &stream)
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor { fc2(fc1(x).gelu(approximate: .tanh)) }
}

/// An adaLN-Zero block: SiLU(c) → Linear gives shift, scale and gate for the attention and
/// the MLP branch; each branch sees LayerNorm(x)·(1 + scale) + shift and adds gate·branch to x
/// (`modulatedLayerNorm` and `gatedResidual` do each in one pass).
public final class DiTBlock: Module {
    let norm1: LayerNorm
    let attn: DiTAttention
    let norm2: LayerNorm
    let mlp: DiTMLP
    let adaLN: Linear

    init(_ d: Int, heads: Int, mlpRatio: Double, stream: inout RandomStream) {
        norm1 = LayerNorm(d, eps: 1e-6, affine: false)
        attn = DiTAttention(d, heads: heads, stream: &stream)
        norm2 = LayerNorm(d, eps: 1e-6, affine: false)
        mlp = DiTMLP(d, hidden: Int(Double(d) * mlpRatio), stream: &stream)
        adaLN = Linear(d, 6 * d, stream: &stream)
        super.init()
    }

    public override func members() -> [(String, ModuleMember)] {
        [("norm1", .module(norm1)), ("attn", .module(attn)), ("norm2", .module(norm2)), ("mlp", .module(mlp)),
         ("adaLN_modulation.1", .module(adaLN))]
    }

    /// x `[N, T, D]` conditioned on c `[N, D]`.
    public func callAsFunction(_ x: Tensor, _ c: Tensor) -> Tensor {
        let m = adaLN(c.silu()).chunked(6, axis: 1)   // shift, scale, gate (attention); shift, scale, gate (MLP)
        let h = gatedResidual(x, gate: m[2], attn(modulatedLayerNorm(x, shift: m[0], scale: m[1], eps: norm1.eps)))
        return gatedResidual(h, gate: m[5], mlp(modulatedLayerNorm(h, shift: m[3], scale: m[4], eps: norm2.eps)))
    }
}

/// LayerNorm, adaLN shift and scale, Linear to p·p·C values per token.
final class DiTFinalLayer: Module {
    let norm: LayerNorm
    let linear: Linear
    let adaLN: Linear

    init(_ d: Int, outputs: Int, stream: inout RandomStream) {
        norm = LayerNorm(d, eps: 1e-6, affine: false)
        linear = Linear(d, outputs, stream: &stream)
        adaLN = Linear(d, 2 * d, stream: &stream)
        super.init()
    }

    override func members() -> [(String, ModuleMember)] {
        [("norm_final", .module(norm)), ("linear", .module(linear)), ("adaLN_modulation.1", .module(adaLN))]
    }

    func callAsFunction(_ x: Tensor, _ c: Tensor) -> Tensor {
        let m = adaLN(c.silu()).chunked(2, axis: 1)
        return linear(modulatedLayerNorm(x, shift: m[0], scale: m[1], eps: norm.eps))
    }
}

/// The reference's `get_2d_sincos_pos_embed`: `[gridSize², dimension]`, row p = i·gridSize + j
/// holds [sin(j·ω), cos(j·ω), sin(i·ω), cos(i·ω)] with ω_k = 10000^(−k/(dimension/4)),
/// k < dimension/4 (the first half encodes the column, as the reference's meshgrid does).
public func sinCosPositions2D(dimension: Int, gridSize: Int) -> Tensor {
    precondition(dimension % 4 == 0, "2-D positions need a dimension divisible by 4, got \(dimension)")
    let quarter = dimension / 4
    let out = Tensor(uninitialized: [gridSize * gridSize, dimension])
    for i in 0..<gridSize {
        for j in 0..<gridSize {
            let row = out.data + (i * gridSize + j) * dimension
            for k in 0..<quarter {
                let omega = 1 / Foundation.pow(10_000.0, Double(k) / Double(quarter))
                row[k] = Float(Foundation.sin(Double(j) * omega))
                row[quarter + k] = Float(Foundation.cos(Double(j) * omega))
                row[2 * quarter + k] = Float(Foundation.sin(Double(i) * omega))
                row[3 * quarter + k] = Float(Foundation.cos(Double(i) * omega))
            }
        }
    }
    return out
}
