import LoomModels
import LoomNN
import LoomTensor
import Testing

@Suite struct UNetTests {
    @Test func w1HasTheReferenceParameterCount() {
        var s = RandomStream(seed: 0, purpose: .initialization)
        let net = UNet(UNetConfig(), stream: &s)
        // WORKLOADS.md: an exact W1 implementation prints 1,623,169.
        #expect(net.parameterCount == 1_623_169)
        let names = Set(net.namedParameters().map(\.0))
        #expect(!names.contains("up.2.resample.weight"), "the last up level has no upsample")
        for name in ["stem.weight", "down.1.res.0.conv1.weight", "down.1.res.0.skip.weight", "down.2.attn.1.qkv.weight",
                     "middle.attn.proj.bias", "up.0.res.2.embeddingProjection.weight", "up.1.resample.weight",
                     "outConv.weight", "timeEmbedding.linear1.weight"] {
            #expect(names.contains(name) == true, "missing \(name)")
        }
    }

    @Test func smallConditionalUNetRunsForwardAndBackward() {
        var c = UNetConfig()
        c.imageSize = 8; c.baseChannels = 8; c.channelMultipliers = [1, 2]; c.resBlocks = 1
        c.attentionResolutions = [4]; c.heads = 2; c.groups = 4; c.classes = 3; c.dropout = 0.1
        var s = RandomStream(seed: 1, purpose: .initialization)
        let net = UNet(c, stream: &s)
        let x = Tensor.normal([2, 8, 8, 1], stream: &s)
        let y = net(x, timesteps: [3, 900], labels: [0, 3])
        #expect(y.shape == [2, 8, 8, 1])
        // The zero-initialised output conv makes the first output exactly zero …
        #expect(y.array.allSatisfy { $0 == 0 })
        // … but gradients still reach every parameter through the output conv's weight.
        (y * y + y).sum().backward()
        #expect(net.outConv.weight.grad != nil)
        #expect(net.namedParameters().allSatisfy { $0.1.grad != nil })
    }

    @Test func sinusoidalEmbeddingIsCosThenSin() {
        let e = sinusoidalEmbedding([0, 5], dimension: 4)
        // f = [1, 10000^(-1/2)] → row t=5: [cos 5, cos 0.05, sin 5, sin 0.05]
        let expected: [Float] = [1, 1, 0, 0, Float(cos(5.0)), Float(cos(0.05)), Float(sin(5.0)), Float(sin(0.05))]
        for (a, b) in zip(e.array, expected) { #expect(abs(a - b) < 1e-6) }
    }
}

import Foundation
