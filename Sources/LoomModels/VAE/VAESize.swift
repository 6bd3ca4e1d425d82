/// Sizes of the VAE family's networks computed from their shapes without building them
/// (exact parameter counts, activation estimates that err on the high side), for the
/// config loader's memory check.
public enum VAESize {
    static func linear(_ i: Double, _ o: Double) -> Double { i * o + o }
    static func convolution(_ i: Double, _ o: Double, _ k: Double, bias: Bool = true) -> Double { i * o * k * k + (bias ? o : 0) }

    /// Two networks trained together (the autoencoder and its discriminator).
    public static func sum(_ a: ModelSize, _ b: ModelSize) -> ModelSize {
        ModelSize(parameters: a.parameters + b.parameters, activationsPerImage: a.activationsPerImage + b.activationsPerImage)
    }

    /// `MLPVAE(imageShape:hidden:latent:)`.
    public static func mlp(imageShape: [Int], hidden: Int, latent: Int) -> ModelSize {
        let d = imageShape.map(Double.init).reduce(1, *), h = Double(hidden), l = Double(latent)
        return ModelSize(parameters: linear(d, h) + 2 * linear(h, l) + linear(l, h) + linear(h, d),
                         activationsPerImage: 4 * d + 4 * h + 6 * l)
    }

    /// `ConvVAE(imageShape:hidden:latent:)`.
    public static func conv(imageShape: [Int], hidden: Int, latent: Int) -> ModelSize {
        let hgt = Double(imageShape[0]), wid = Double(imageShape[1]), c = Double(imageShape[2])
        let h = Double(hidden), l = Double(latent), flat = (hgt / 4) * (wid / 4) * 2 * h
        let convs: Double = convolution(c, h, 4) + convolution(h, 2 * h, 4) + convolution(2 * h, h, 4) + convolution(h, c, 4)
        let params = convs + 2 * linear(flat, l) + linear(l, flat)
        return ModelSize(parameters: params, activationsPerImage: hgt * wid * (3 * c + h) + 6 * flat + hgt * wid * h / 2 + 6 * l)
    }

    /// `PatchDiscriminator(inChannels:width:layers:)` on `imageSize`-pixel images.
    public static func patchDiscriminator(inChannels: Int, width: Int, layers: Int, imageSize: Int) -> ModelSize {
        let w = Double(width), side = Double(imageSize)
        var params = convolution(Double(inChannels), w, 4), acts = side * side * Double(inChannels) + 2 * (side / 2) * (side / 2) * w
        var mult = 1.0, r = side / 2
        for n in 1..<max(layers, 1) {
            let previous = mult
            mult = Double(min(1 << min(n, 3), 8))
            params += convolution(w * previous, w * mult, 4, bias: false) + 2 * w * mult
            r /= 2
            acts += 3 * r * r * w * mult
        }
        params += convolution(w * mult, w * Double(min(1 << min(layers, 3), 8)), 4, bias: false)
        mult = Double(min(1 << min(layers, 3), 8))
        params += 2 * w * mult + convolution(w * mult, 1, 4)
        acts += 4 * r * r * w * mult
        return ModelSize(parameters: params, activationsPerImage: 2 * acts)   // on real and on fake images
    }
}

extension KLAutoencoderConfig {
    /// Exact parameter count and an activation estimate, mirroring `KLAutoencoder.init`.
    public var size: ModelSize {
        func k3(_ i: Double, _ o: Double) -> Double { VAESize.convolution(i, o, 3) }
        let inC = Double(inChannels), latent = Double(latentChannels)
        let widths = [Double(baseChannels)] + channelMultipliers.map { Double(baseChannels) * Double($0) }
        var params = 0.0, acts = 0.0
        var r = Double(imageSize)
        func res(_ i: Double, _ o: Double) {
            let shortcut: Double = i == o ? 0 : VAESize.convolution(i, o, 1)
            let norms: Double = 2 * i + 2 * o
            params += norms + k3(i, o) + k3(o, o) + shortcut
            acts += r * r * (2 * i + 5 * o)
        }
        // Encoder.
        params += k3(inC, widths[0])
        acts += r * r * (inC + widths[0])
        var w = widths[0]
        for level in 1..<widths.count {
            for _ in 0..<resBlocks { res(w, widths[level]); w = widths[level] }
            params += k3(w, w)
            r /= 2
            acts += r * r * w
        }
        res(w, w)
        params += 2 * w + k3(w, 2 * latent)
        acts += r * r * (2 * w + 4 * latent)
        // Decoder.
        params += k3(latent, w)
        res(w, w)
        for level in (0..<(widths.count - 1)).reversed() {
            r *= 2
            params += k3(w, w)
            acts += 2 * r * r * w
            for _ in 0..<resBlocks { res(w, widths[level]); w = widths[level] }
        }
        params += 2 * w + k3(w, inC)
        acts += r * r * (2 * w + 2 * inC)
        return ModelSize(parameters: params, activationsPerImage: acts)
    }
}
