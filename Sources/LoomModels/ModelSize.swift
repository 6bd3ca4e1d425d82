/// Sizes of a model computed from its configuration without building it, in `Double` so that
/// no configuration (however absurd) overflows: the config loader uses them to refuse a model
/// that cannot fit before anything is allocated.
public struct ModelSize: Equatable, Sendable {
    /// Trainable parameters (and buffers) of every network the run trains.
    public var parameters: Double
    /// Floats the training step keeps alive per image (activations saved for backward), an
    /// estimate that errs on the high side.
    public var activationsPerImage: Double

    /// Parameter-sized tensors a run holds per parameter: weights, gradients, two Adam moments
    /// and the EMA copy.
    public static let tensorsPerParameter = 5.0

    /// Bytes one rank needs for training at `batch` images (float32 everywhere).
    public func trainingBytes(batch: Int) -> Double {
        4 * (Self.tensorsPerParameter * parameters + Double(batch) * activationsPerImage)
    }
}

private func linear(_ i: Double, _ o: Double, bias: Bool = true) -> Double { i * o + (bias ? o : 0) }
private func conv(_ i: Double, _ o: Double, _ k: Double, bias: Bool = true) -> Double { i * o * k * k + (bias ? o : 0) }

extension UNetConfig {
    /// Exact parameter count and an activation estimate, mirroring `UNet.init` and its forward pass.
    public var size: ModelSize {
        let base = Double(baseChannels), emb = Double(embeddingWidth), inC = Double(inChannels), heads = Double(heads)
        var params = linear(base, emb) + linear(emb, emb) + (classes > 0 ? Double(classes + 1) * emb : 0) + conv(inC, base, 3)
        var acts = 0.0
        func resBlock(_ i: Double, _ o: Double, _ r: Double) {
            params += 2 * i + conv(i, o, 3) + linear(emb, o) + 2 * o + conv(o, o, 3) + (i == o ? 0 : conv(i, o, 1))
            acts += r * r * (2 * i + 6 * o)          // norm1 in/out, conv1, +emb, norm2, dropout, conv2, sum
        }
        func attention(_ c: Double, _ r: Double) {
            params += 2 * c + conv(c, 3 * c, 1) + conv(c, c, 1)
            let tokens = r * r
            acts += tokens * 10 * c + 2 * heads * tokens * tokens   // norm, qkv, head copies, output; scores and softmax
        }
        var channels = base, resolution = Double(imageSize)
        var skips = [channels]
        acts += resolution * resolution * (inC + base)
        for (level, mult) in channelMultipliers.enumerated() {
            let out = base * Double(mult), attend = attentionResolutions.contains(Int(resolution))
            for _ in 0..<resBlocks {
                resBlock(channels, out, resolution)
                channels = out
                if attend { attention(channels, resolution) }
                skips.append(channels)
            }
            if level < channelMultipliers.count - 1 {
                params += conv(channels, channels, 3)
                skips.append(channels)
                resolution /= 2
                acts += resolution * resolution * channels
            }
        }
        resBlock(channels, channels, resolution)
        attention(channels, resolution)
        resBlock(channels, channels, resolution)
        for (level, mult) in channelMultipliers.enumerated().reversed() {
            let out = base * Double(mult), attend = attentionResolutions.contains(Int(resolution))
            for _ in 0...resBlocks {
                let skip = skips.removeLast()
                acts += resolution * resolution * (channels + skip)     // the concatenation
                resBlock(channels + skip, out, resolution)
                channels = out
                if attend { attention(channels, resolution) }
            }
            if level > 0 {
                params += conv(channels, channels, 3)
                resolution *= 2
                acts += 2 * resolution * resolution * channels         // nearest ×2, conv
            }
        }
        params += 2 * channels + conv(channels, inC * (learnSigma ? 2 : 1), 3)
        acts += resolution * resolution * (2 * channels + inC)
        return ModelSize(parameters: params, activationsPerImage: acts)
    }
}

extension DCGANConfig {
    /// Parameter count of G and D (within the spectral-norm power-iteration vectors, which are
    /// not parameters) and an activation estimate for one G and two D passes (real and fake).
    public var size: ModelSize {
        let L = levels, side = Double(baseSize), c = Double(channels), cond = isConditional
        var params = 0.0, acts = 0.0
        // G: (z ⊕ embedding) → level widths gChannels·2^(L−1) … gChannels → image.
        var width = Double(zDim + (cond ? classEmbedding : 0))
        if cond { params += Double(classes) * Double(classEmbedding) }
        var s = side
        for level in 0..<L {
            let out = Double(gChannels) * Double(1 << (L - 1 - level))
            params += conv(width, out, level == 0 ? side : 4, bias: false) + 2 * out
            if level > 0 { s *= 2 }
            acts += 3 * s * s * out
            width = out
        }
        params += conv(width, c, 4)
        acts += 2 * Double(imageSize * imageSize) * c
        // D: image (⊕ label planes) → dChannels … dChannels·2^(L−1) → logit.
        let planes = cond && conditioning == .channels ? Double(classes) : 0
        width = Double(dChannels)
        s = Double(imageSize) / 2
        params += conv(c + planes, width, 4)
        var dActs = s * s * width * 2 + Double(imageSize * imageSize) * (c + planes)
        for _ in 1..<L {
            let out = width * 2
            params += conv(width, out, 4, bias: dNorm == .none) + (dNorm == .none ? 0 : 2 * out)
            s /= 2
            dActs += 3 * s * s * out
            width = out
        }
        params += conv(width, 1, side)
        if cond && conditioning == .projection { params += Double(classes) * width }
        acts += 2 * dActs
        return ModelSize(parameters: params, activationsPerImage: acts)
    }
}

extension DiTConfig {
    /// Exact parameter count (the positions are fixed, not parameters) and an activation
    /// estimate: per block the normalised, modulated and projected tokens, the MLP's hidden
    /// layer and the attention scores.
    public var size: ModelSize {
        let d = Double(hiddenSize), hidden = Double(Int(Double(hiddenSize) * mlpRatio)), p = Double(patchSize)
        let tokens = Double(gridSize * gridSize)
        var params = conv(Double(inChannels), d, p) + linear(Double(DiTConfig.timestepFrequencies), d) + linear(d, d)
        if classes > 0 { params += Double(classes + 1) * d }
        params += Double(depth) * (linear(d, 3 * d) + linear(d, d) + linear(d, hidden) + linear(hidden, d) + linear(d, 6 * d))
        params += linear(d, p * p * Double(outChannels)) + linear(d, 2 * d)
        let perBlock = tokens * (12 * d + 2 * hidden) + 2 * Double(heads) * tokens * tokens
        let acts = Double(depth) * perBlock + 2 * tokens * d + Double(imageSize * imageSize * (inChannels + outChannels))
        return ModelSize(parameters: params, activationsPerImage: acts)
    }
}
