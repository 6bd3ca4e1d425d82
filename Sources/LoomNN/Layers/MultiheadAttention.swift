import LoomTensor

/// Multi-head attention over `[B, T, E]` sequences (PyTorch `nn.MultiheadAttention` with
/// `batch_first=True` and its state-dict names: `in_proj_weight`, `in_proj_bias`,
/// `out_proj.weight`, `out_proj.bias`; for cross-attention with other key/value widths,
/// `q_proj_weight`, `k_proj_weight`, `v_proj_weight`).
public final class MultiheadAttention: Module {
    public let embedDim: Int
    public let heads: Int
    let inProjection: Tensor?                     // [3E, E] (self-attention widths)
    let separate: (q: Tensor, k: Tensor, v: Tensor)?  // [E, E], [E, kDim], [E, vDim]
    let inBias: Tensor                            // [3E]
    public let outProjection: Linear

    /// `keyDim`/`valueDim` other than `embedDim` make separate projection weights.
    public init(embedDim: Int, heads: Int, keyDim: Int? = nil, valueDim: Int? = nil, stream: inout RandomStream) {
        precondition(embedDim % heads == 0, "MultiheadAttention: \(embedDim) is not divisible by \(heads) heads")
        self.embedDim = embedDim
        self.heads = heads
        let kd = keyDim ?? embedDim, vd = valueDim ?? embedDim
        // PyTorch: xavier-uniform projections, zero biases.
        if kd == embedDim && vd == embedDim {
            let w = Tensor(uninitialized: [3 * embedDim, embedDim])
            Init.xavierUniform(w, stream: &stream)
            inProjection = w
            separate = nil
        } else {
            let q = Tensor(uninitialized: [embedDim, embedDim]), k = Tensor(uninitialized: [embedDim, kd])
            let v = Tensor(uninitialized: [embedDim, vd])
            for t in [q, k, v] { Init.xavierUniform(t, stream: &stream) }
            inProjection = nil
            separate = (q, k, v)
        }
        inBias = Tensor.zeros([3 * embedDim])
        outProjection = Linear(embedDim, embedDim, stream: &stream)
        Init.zeros(outProjection.bias!)
        for t in [inProjection, separate?.q, separate?.k, separate?.v, inBias].compactMap({ $0 }) { t.requiresGrad = true }
        super.init()
    }

    public override func members() -> [(String, ModuleMember)] {
        var m: [(String, ModuleMember)] = []
        if let inProjection { m.append(("in_proj_weight", .slot(Parameter(wrappedValue: inProjection)))) }
        if let separate {
            m += [("q_proj_weight", .slot(Parameter(wrappedValue: separate.q))),
                  ("k_proj_weight", .slot(Parameter(wrappedValue: separate.k))),
                  ("v_proj_weight", .slot(Parameter(wrappedValue: separate.v)))]
        }
        m.append(("in_proj_bias", .slot(Parameter(wrappedValue: inBias))))
        m.append(("out_proj", .module(outProjection)))
        return m
    }

    /// Attention of `query` over `key`/`value` (self-attention when they are omitted).
    public func callAsFunction(_ query: Tensor, key: Tensor? = nil, value: Tensor? = nil) -> Tensor {
        let (b, tq, e) = (query.shape[0], query.shape[1], embedDim)
        let d = e / heads
        let q: Tensor, k: Tensor, v: Tensor
        let biases = inBias.chunked(3, axis: 0)
        if let inProjection, key == nil, value == nil {
            // One GEMM for q, k and v: [B, T, 3E] → [3, B, H, T, D].
            let qkv = linear(query, weight: inProjection, bias: inBias)
                .reshaped([b, tq, 3, heads, d]).permuted([2, 0, 3, 1, 4])
            let parts = qkv.chunked(3, axis: 0)
            (q, k, v) = (parts[0].reshaped([b, heads, tq, d]), parts[1].reshaped([b, heads, tq, d]),
                         parts[2].reshaped([b, heads, tq, d]))
        } else {
            let keyInput = key ?? query, valueInput = value ?? keyInput
            let weights = inProjection.map { $0.chunked(3, axis: 0) } ?? [separate!.q, separate!.k, separate!.v]
            func heads(_ x: Tensor, _ w: Tensor, _ bias: Tensor) -> Tensor {
                linear(x, weight: w, bias: bias).reshaped([x.shape[0], x.shape[1], self.heads, d]).permuted([0, 2, 1, 3])
            }
            q = heads(query, weights[0], biases[0])
            k = heads(keyInput, weights[1], biases[1])
            v = heads(valueInput, weights[2], biases[2])
        }
        let attended = scaledDotProductAttention(query: q, key: k, value: v)   // [B, H, Tq, D]
        return outProjection(attended.permuted([0, 2, 1, 3]).reshaped([b, tq, e]))
    }
}
