import LoomModels
import LoomNN
import LoomTensor
import Testing

/// The parameter counts the config loader computes without building a model equal the
/// elements of the models it builds.
@Suite struct ModelSizeTests {
    func built(_ module: Module) -> Double { Double(module.parameters().map(\.count).reduce(0, +)) }

    @Test func unetCountIsExact() {
        var shapes: [UNetConfig] = [UNetConfig()]       // W1: 1,623,169 (configs/ddpm-unet-s.yaml)
        var c = UNetConfig()
        c.imageSize = 16; c.baseChannels = 16; c.channelMultipliers = [1, 3]; c.resBlocks = 1
        c.attentionResolutions = [16, 8]; c.heads = 2; c.classes = 3; c.inChannels = 3; c.groups = 4
        shapes.append(c)
        c.channelMultipliers = [2]; c.attentionResolutions = []; c.resBlocks = 3
        shapes.append(c)
        for shape in shapes {
            var s = RandomStream(key: 1)
            #expect(shape.size.parameters == built(UNet(shape, stream: &s)), "\(shape)")
        }
        #expect(UNetConfig().size.parameters == 1_623_169)
    }

    @Test func ditCountIsExact() {
        var shapes: [DiTConfig] = [DiTConfig()]        // W2: 4,167,568 (configs/dit-s.yaml)
        var c = DiTConfig()
        c.imageSize = 8; c.inChannels = 3; c.patchSize = 2; c.hiddenSize = 12; c.depth = 2; c.heads = 3
        c.mlpRatio = 2.5; c.classes = 0; c.learnSigma = true
        shapes.append(c)
        for shape in shapes {
            var s = RandomStream(key: 1)
            #expect(shape.size.parameters == built(DiT(shape, stream: &s)), "\(shape)")
        }
        var learned = UNetConfig()
        learned.learnSigma = true
        var s = RandomStream(key: 1)
        #expect(learned.size.parameters == built(UNet(learned, stream: &s)))
        #expect(DiTConfig().size.parameters == 4_167_568)
    }

    @Test(arguments: [28, 32, 64]) func dcganCountIsExact(imageSize: Int) {
        var shapes: [DCGANConfig] = []
        for (classes, conditioning, norm) in [(0, DCGANConfig.Conditioning.projection, DCGANConfig.DiscriminatorNorm.batch),
                                              (10, .projection, .none), (5, .channels, .layer)] {
            var c = DCGANConfig()
            c.imageSize = imageSize; c.channels = classes == 0 ? 3 : 1; c.zDim = 20; c.gChannels = 8; c.dChannels = 8
            c.classes = classes; c.classEmbedding = 6; c.conditioning = conditioning; c.dNorm = norm
            shapes.append(c)
        }
        for shape in shapes {
            var s = RandomStream(key: 2)
            let want = built(DCGANGenerator(shape, stream: &s)) + built(DCGANDiscriminator(shape, stream: &s))
            #expect(shape.size.parameters == want, "\(shape)")
        }
    }

    /// W3 as configs/dcgan-32.yaml states it: G 1,068,931 + D 663,361 parameters.
    @Test func w3Count() {
        #expect(DCGANConfig().size.parameters == 1_068_931 + 663_361)
    }
}
