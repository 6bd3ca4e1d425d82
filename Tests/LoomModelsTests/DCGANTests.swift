import LoomModels
import LoomNN
import LoomTensor
import Testing

@Suite struct DCGANTests {
    @Test func w3HasTheReferenceParameterCounts() {
        var s = RandomStream(seed: 0, purpose: .initialization)
        let c = DCGANConfig()
        let g = DCGANGenerator(c, stream: &s), d = DCGANDiscriminator(c, stream: &s)
        // WORKLOADS.md: an exact W3 implementation prints G 1,068,931 + D 663,361.
        #expect(g.parameterCount == 1_068_931)
        #expect(d.parameterCount == 663_361)
    }

    @Test func stateDictNamesFollowThePyTorchTutorial() {
        var s = RandomStream(seed: 0, purpose: .initialization)
        let g = DCGANGenerator(DCGANConfig(), stream: &s), d = DCGANDiscriminator(DCGANConfig(), stream: &s)
        let gShapes = Dictionary(uniqueKeysWithValues: g.stateDict().map { ($0.0, $0.1.shape) })
        #expect(gShapes["main.0.weight"] == [100, 256, 4, 4])      // ConvT [I, O, kh, kw], no bias
        #expect(gShapes["main.0.bias"] == nil)
        #expect(gShapes["main.1.running_mean"] == [256])
        #expect(gShapes["main.1.num_batches_tracked"] == [])
        #expect(gShapes["main.9.weight"] == [64, 3, 4, 4])
        #expect(gShapes["main.9.bias"] == [3])
        #expect(g.stateDict().count == 3 * (1 + 5) + 2)  // ConvT weight + 5 BN entries per level
        let dShapes = Dictionary(uniqueKeysWithValues: d.stateDict().map { ($0.0, $0.1.shape) })
        #expect(dShapes["main.0.weight"] == [64, 3, 4, 4] && dShapes["main.0.bias"] == [64])
        #expect(dShapes["main.2.weight"] == [128, 64, 4, 4] && dShapes["main.2.bias"] == nil)
        #expect(dShapes["main.3.running_var"] == [128])
        #expect(dShapes["main.8.weight"] == [1, 256, 4, 4] && dShapes["main.8.bias"] == [1])

        var c = DCGANConfig()
        c.classes = 10; c.spectralNorm = true; c.dNorm = .none
        let names = Set(DCGANDiscriminator(c, stream: &s).stateDict().map(\.0))
        for name in ["main.0.weight_orig", "main.0.weight_u", "main.0.weight_v", "main.2.bias", "main.6.weight_orig",
                     "embed.weight_orig", "embed.weight_u", "embed.weight_v"] {
            #expect(names.contains(name), "missing \(name)")
        }
        #expect(!names.contains("main.0.weight") && !names.contains("embed.weight"))
        #expect(Set(DCGANGenerator(c, stream: &s).stateDict().map(\.0)).contains("embed.weight"))
    }

    @Test func outputShapesForEverySizeAndChannelCount() {
        for size in [28, 32, 64] {
            for channels in [1, 3] {
                var c = DCGANConfig()
                c.imageSize = size; c.channels = channels; c.gChannels = 8; c.dChannels = 8
                var s = RandomStream(seed: UInt64(size + channels), purpose: .initialization)
                let g = DCGANGenerator(c, stream: &s), d = DCGANDiscriminator(c, stream: &s)
                let z = Tensor.normal([2, 100], stream: &s)
                let images = noGrad { g(z) }
                #expect(images.shape == [2, size, size, channels])
                #expect(images.array.allSatisfy { abs($0) <= 1 })
                #expect(noGrad { d(images) }.shape == [2])
            }
        }
        // Widths: the top level has gChannels·2^(levels−1) channels.
        var c = DCGANConfig()
        c.imageSize = 64
        var s = RandomStream(seed: 1, purpose: .initialization)
        let g64 = Dictionary(uniqueKeysWithValues: DCGANGenerator(c, stream: &s).stateDict().map { ($0.0, $0.1.shape) })
        #expect(g64["main.0.weight"] == [100, 512, 4, 4] && g64["main.12.weight"] == [64, 3, 4, 4])
        c.imageSize = 28; c.channels = 1
        let g28 = Dictionary(uniqueKeysWithValues: DCGANGenerator(c, stream: &s).stateDict().map { ($0.0, $0.1.shape) })
        #expect(g28["main.0.weight"] == [100, 128, 7, 7] && g28["main.6.weight"] == [64, 1, 4, 4])
        let d28 = Dictionary(uniqueKeysWithValues: DCGANDiscriminator(c, stream: &s).stateDict().map { ($0.0, $0.1.shape) })
        #expect(d28["main.5.weight"] == [1, 128, 7, 7])
    }

    @Test func conditionalVariantsRunForwardAndBackward() {
        let variants: [(DCGANConfig.Conditioning, DCGANConfig.DiscriminatorNorm, Bool)] = [
            (.projection, .batch, false), (.projection, .none, true), (.channels, .layer, false), (.channels, .batch, true),
        ]
        for (conditioning, norm, sn) in variants {
            var c = DCGANConfig()
            c.imageSize = 28; c.channels = 1; c.gChannels = 8; c.dChannels = 8; c.classes = 10; c.classEmbedding = 6
            c.conditioning = conditioning; c.dNorm = norm; c.spectralNorm = sn
            var s = RandomStream(seed: 3, purpose: .initialization)
            let g = DCGANGenerator(c, stream: &s), d = DCGANDiscriminator(c, stream: &s)
            let labels = [0, 9, 4]
            let images = g(Tensor.normal([3, 100], stream: &s), labels: labels)
            #expect(images.shape == [3, 28, 28, 1])
            let logits = d(images, labels: labels)
            #expect(logits.shape == [3])
            GANLoss.bce.generatorLoss(fake: logits).backward()
            #expect(g.namedParameters().allSatisfy { $0.1.grad != nil }, "\(conditioning) \(norm) sn=\(sn)")
            #expect(d.namedParameters().allSatisfy { $0.1.grad != nil }, "\(conditioning) \(norm) sn=\(sn)")
            // The label changes the logit (evaluation mode: no batch statistics, no power iteration).
            d.eval()
            let x = images.detached()
            #expect(noGrad { d(x, labels: labels) }.array != noGrad { d(x, labels: [1, 2, 3]) }.array)
        }
    }

    @Test func projectionLogitIsPsiPlusEmbeddingDotPooledFeatures() {
        var c = DCGANConfig()
        c.imageSize = 28; c.channels = 1; c.dChannels = 4; c.classes = 3
        var s = RandomStream(seed: 4, purpose: .initialization)
        let d = DCGANDiscriminator(c, stream: &s)
        d.eval()
        let x = Tensor.uniform([2, 28, 28, 1], low: -1, high: 1, stream: &s)
        let logits = noGrad { d(x, labels: [2, 0]) }
        // An unconditional D with the same weights gives ψ(φ(x)); the projection adds ⟨e_y, Σ φ⟩.
        var u = c
        u.classes = 0
        let plain = DCGANDiscriminator(u, stream: &s)
        plain.eval()
        let state = d.stateDict().filter { !$0.0.hasPrefix("embed.") }
        #expect((try? plain.loadStateDict(state)) != nil)
        let psi = noGrad { plain(x) }
        #expect(psi.array != logits.array)
        // φ(x) by hand: 28 → 14 (LReLU) → 7 (BN, LReLU).
        let params = Dictionary(uniqueKeysWithValues: d.stateDict())
        let h1 = conv2d(x, weight: params["main.0.weight"]!, bias: params["main.0.bias"]!, stride: 2, padding: 1).leakyRelu(0.2)
        let h2 = conv2d(h1, weight: params["main.2.weight"]!, bias: nil, stride: 2, padding: 1)
        let phi = noGrad {
            batchNorm(h2, weight: params["main.3.weight"]!, bias: params["main.3.bias"]!, runningMean: params["main.3.running_mean"]!,
                      runningVar: params["main.3.running_var"]!, training: false).leakyRelu(0.2)
        }
        let e = params["embed.weight"]!
        for (i, y) in [2, 0].enumerated() {
            var dot = 0.0
            for ch in 0..<8 {
                var pooled = 0.0
                for p in 0..<49 { pooled += Double(phi.data[(i * 49 + p) * 8 + ch]) }
                dot += pooled * Double(e.data[y * 8 + ch])
            }
            let expected = Double(psi.data[i]) + dot
            #expect(abs(Double(logits.data[i]) - expected) < 1e-4 * max(1, abs(expected)))
        }
    }

    @Test func initialisationIsDCGANs() {
        var c = DCGANConfig()
        c.imageSize = 64
        var s = RandomStream(seed: 5, purpose: .initialization)
        let g = DCGANGenerator(c, stream: &s)
        let params = Dictionary(uniqueKeysWithValues: g.stateDict())
        func moments(_ t: Tensor) -> (Double, Double) {
            let xs = t.array.map(Double.init)
            let mean = xs.reduce(0, +) / Double(xs.count)
            return (mean, (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count)).squareRoot())
        }
        let (wMean, wStd) = moments(params["main.3.weight"]!)         // 512·256·16 values
        #expect(abs(wMean) < 1e-3 && abs(wStd - 0.02) < 1e-3)
        let (bnMean, bnStd) = moments(params["main.1.weight"]!)
        #expect(abs(bnMean - 1) < 0.01 && abs(bnStd - 0.02) < 0.01)
        #expect(params["main.1.bias"]!.array.allSatisfy { $0 == 0 })
        #expect(throws: DCGANConfigError.self) {
            var bad = DCGANConfig()
            bad.imageSize = 48
            try bad.validate()
        }
    }
}
