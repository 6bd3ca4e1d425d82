import Foundation
import LoomNN
import LoomTensor

/// Sinusoidal timestep features ([cos, sin], as guided-diffusion) → Linear → SiLU → Linear.
final class TimestepEmbedding: Module {
    let frequencies: Int
    let linear1: Linear
    let linear2: Linear

    init(frequencies: Int, width: Int, stream: inout RandomStream) {
        self.frequencies = frequencies
        linear1 = Linear(frequencies, width, stream: &stream)
        linear2 = Linear(width, width, stream: &stream)
        super.init()
    }

    func callAsFunction(_ t: [Int]) -> Tensor {
        linear2(linear1(sinusoidalEmbedding(t, dimension: frequencies)).silu())
    }
}

/// `[N, dimension]` features: cos(t·f_i) then sin(t·f_i), f_i = 10000^(−i/half).
public func sinusoidalEmbedding(_ t: [Int], dimension: Int, maxPeriod: Double = 10_000) -> Tensor {
    let half = dimension / 2
    let out = Tensor.zeros([t.count, dimension])
    for (n, step) in t.enumerated() {
        for i in 0..<half {
            let arg = Double(step) * Foundation.exp(-Foundation.log(maxPeriod) * Double(i) / Double(half))
            out.data[n * dimension + i] = Float(Foundation.cos(arg))
            out.data[n * dimension + half + i] = Float(Foundation.sin(arg))
        }
    }
    return out
}

/// GN, SiLU, conv3×3, + Linear(SiLU(emb)), GN, SiLU, dropout, conv3×3, plus the input
/// (through a 1×1 conv when the width changes).
final class ResBlock: Module {
    let norm1: GroupNorm
    let conv1: Conv2d
    let embeddingProjection: Linear
    let norm2: GroupNorm
    let dropout: Dropout?
    let conv2: Conv2d
    let skip: Conv2d?

    init(_ inChannels: Int, _ outChannels: Int, embedding: Int, groups: Int, dropout p: Double,
         dropoutRandom: RandomSource, stream: inout RandomStream) {
        norm1 = GroupNorm(groups: groups, channels: inChannels)
        conv1 = Conv2d(inChannels, outChannels, kernel: 3, padding: 1, stream: &stream)
        embeddingProjection = Linear(embedding, outChannels, stream: &stream)
        norm2 = GroupNorm(groups: groups, channels: outChannels)
        dropout = p > 0 ? Dropout(Float(p), source: dropoutRandom) : nil
        conv2 = Conv2d(outChannels, outChannels, kernel: 3, padding: 1, stream: &stream)
        Init.zeros(conv2.weight)
        Init.zeros(conv2.bias!)
        skip = inChannels == outChannels ? nil : Conv2d(inChannels, outChannels, kernel: 1, stream: &stream)
        super.init()
    }

    /// `activatedEmbedding` is SiLU(emb), `[N, E]`.
    func callAsFunction(_ x: Tensor, _ activatedEmbedding: Tensor) -> Tensor {
        var h = conv1(norm1.withSiLU(x))
        let n = x.shape[0], c = h.shape[3]
        h = h + embeddingProjection(activatedEmbedding).reshaped([n, 1, 1, c])
        h = norm2.withSiLU(h)
        if let dropout { h = dropout(h) }
        h = conv2(h)
        return (skip.map { $0(x) } ?? x) + h
    }
}

/// GroupNorm, 1×1 conv to q, k, v, multi-head softmax(qkᵀ/√d)v, 1×1 conv projection, residual.
/// The 1×1 convs keep PyTorch's conv shapes `[out, in, 1, 1]` and run as one GEMM over
/// every pixel (NHWC makes a 1×1 conv a linear layer).
final class AttentionBlock: Module {
    let heads: Int
    let norm: GroupNorm
    let qkv: Conv2d
    let proj: Conv2d

    init(_ channels: Int, heads: Int, groups: Int, stream: inout RandomStream) {
        precondition(channels % heads == 0, "attention: \(channels) channels do not split into \(heads) heads")
        self.heads = heads
        norm = GroupNorm(groups: groups, channels: channels)
        qkv = Conv2d(channels, 3 * channels, kernel: 1, stream: &stream)
        proj = Conv2d(channels, channels, kernel: 1, stream: &stream)
        Init.zeros(proj.weight)
        Init.zeros(proj.bias!)
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, hgt, wid, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let t = hgt * wid, d = c / heads
        let tokens = norm(x).reshaped([n, t, c])
        let parts = linear(tokens, weight: qkv.weight.reshaped([3 * c, c]), bias: qkv.bias)
            .reshaped([n, t, 3, heads, d]).permuted([2, 0, 3, 1, 4]).chunked(3, axis: 0)
        let attended = scaledDotProductAttention(query: parts[0].reshaped([n, heads, t, d]),
                                                 key: parts[1].reshaped([n, heads, t, d]),
                                                 value: parts[2].reshaped([n, heads, t, d]))
        let merged = attended.permuted([0, 2, 1, 3]).reshaped([n, t, c])
        return x + linear(merged, weight: proj.weight.reshaped([c, c]), bias: proj.bias).reshaped([n, hgt, wid, c])
    }
}
