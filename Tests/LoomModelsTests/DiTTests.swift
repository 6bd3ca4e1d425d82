import Foundation
import LoomModels
import LoomNN
import LoomTensor
import Testing

@Suite struct DiTTests {
    /// A DiT small enough for finite differences: 4×4×1 images, patch 2, width 8, 2 heads.
    static func tiny(classes: Int = 3) -> DiTConfig {
        var c = DiTConfig()
        (c.imageSize, c.inChannels, c.patchSize, c.hiddenSize, c.depth, c.heads, c.classes) = (4, 1, 2, 8, 2, 2, classes)
        return c
    }

    @Test func w2HasTheReferenceParameterCount() {
        var s = RandomStream(key: 1)
        // WORKLOADS.md's table: 4,167,568 for W2 (DiTConfig's defaults).
        #expect(DiT(DiTConfig(), stream: &s).parameterCount == 4_167_568)
        // The reference's state-dict names, so that its checkpoints map one to one.
        let names = Set(DiT(Self.tiny(), stream: &s).namedParameters().map(\.0))
        for name in ["x_embedder.weight", "x_embedder.bias", "t_embedder.mlp.0.weight", "t_embedder.mlp.2.bias",
                     "y_embedder.weight", "blocks.0.attn.qkv.weight", "blocks.1.attn.proj.bias", "blocks.0.mlp.fc1.weight",
                     "blocks.1.mlp.fc2.weight", "blocks.0.adaLN_modulation.1.weight", "final_layer.linear.weight",
                     "final_layer.adaLN_modulation.1.bias"] {
            #expect(names.contains(name), "\(name)")
        }
    }

    /// adaLN-Zero: with zero modulation every gate is 0, so each block returns its input, and
    /// the zero output layer makes the prediction exactly 0 whatever the input.
    @Test func zeroInitialisationMakesBlocksIdentitiesAndTheOutputZero() {
        var s = RandomStream(key: 2)
        let net = DiT(Self.tiny(), stream: &s)
        let x = Tensor.normal([3, 4, 4, 1], stream: &s)
        let y = net(x, timesteps: [0, 500, 999], labels: [0, 2, 3])
        #expect(y.shape == [3, 4, 4, 1])
        #expect(y.array.allSatisfy { $0 == 0 })
        let tokens = Tensor.normal([3, 4, 8], stream: &s), cond = Tensor.normal([3, 8], stream: &s)
        // With a learned variance the output has twice the channels (ε, then v), still zero.
        var sigma = Self.tiny()
        sigma.learnSigma = true
        let both = DiT(sigma, stream: &s)(x, timesteps: [0, 500, 999], labels: [0, 2, 3])
        #expect(both.shape == [3, 4, 4, 2] && both.array.allSatisfy { $0 == 0 })
        #expect(net.blocks.count == 2)
        for block in net.blocks { #expect(block(tokens, cond).array == tokens.array) }
    }

    /// The positions against the reference's NumPy code (`get_2d_sincos_pos_embed` in
    /// facebookresearch/DiT models.py, transcribed), run by python3 with NumPy.
    @Test func positionsMatchTheReferenceNumPyCode() throws {
        let script = """
        import numpy as np, sys
        def one(d, pos):
            omega = np.arange(d // 2, dtype=np.float64); omega /= d / 2.; omega = 1. / 10000**omega
            out = np.einsum('m,d->md', pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)
        def two(d, g):
            gh = np.arange(g, dtype=np.float32); gw = np.arange(g, dtype=np.float32)
            grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape([2, 1, g, g])
            return np.concatenate([one(d // 2, grid[0]), one(d // 2, grid[1])], axis=1)
        np.savetxt(sys.stdout, two(24, 5).reshape(-1), fmt='%.9e')
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with NumPy is needed (Debian python3-numpy, which python3-h5py pulls in)")
        let want = text.split(separator: "\n").compactMap { Float($0) }
        let got = sinCosPositions2D(dimension: 24, gridSize: 5)
        #expect(got.shape == [25, 24] && want.count == 25 * 24)
        #expect(zip(got.array, want).map { abs($0 - $1) }.max()! < 1e-6)
    }

    @Test func unpatchifyPlacesEveryTokenEntryAtItsPixel() {
        let (n, g, p, c) = (2, 3, 2, 3)
        let tokens = Tensor((0..<(n * g * g * p * p * c)).map(Float.init), shape: [n, g * g, p * p * c])
        let images = DiT.unpatchify(tokens, gridSize: g, patchSize: p, channels: c)
        #expect(images.shape == [n, g * p, g * p, c])
        for b in 0..<n {
            for y in 0..<(g * p) {
                for x in 0..<(g * p) {
                    for ch in 0..<c {
                        let token = (y / p) * g + x / p, entry = ((y % p) * p + x % p) * c + ch
                        let want = Float((b * g * g + token) * p * p * c + entry)
                        #expect(images.data[((b * g * p + y) * g * p + x) * c + ch] == want)
                    }
                }
            }
        }
    }

    /// Autograd against central differences on a DiT whose zero-initialised parts were made
    /// non-zero (otherwise most gradients vanish), for entries of every kind of parameter.
    @Test func gradientsMatchCentralDifferences() {
        var s = RandomStream(key: 3)
        let net = DiT(Self.tiny(), stream: &s)
        for (_, p) in net.namedParameters() { Init.normal(p, std: 0.3, stream: &s) }
        let x = Tensor.normal([2, 4, 4, 1], stream: &s), r = Tensor.normal([2, 4, 4, 1], stream: &s)
        let t = [10, 700], labels = [1, 3]
        func loss() -> Double { Double(noGrad { (net(x, timesteps: t, labels: labels) * r).sum() }.item) }
        let l = (net(x, timesteps: t, labels: labels) * r).sum()
        l.backward()
        var worst = 0.0, largest = 0.0
        for (name, p) in net.namedParameters() where ["x_embedder.weight", "y_embedder.weight", "t_embedder.mlp.0.weight",
                                                      "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc1.bias",
                                                      "blocks.0.adaLN_modulation.1.weight", "final_layer.linear.weight"].contains(name) {
            let grad = p.grad!
            for i in stride(from: 0, to: p.count, by: max(1, p.count / 6)) {
                let saved = p.data[i], h: Float = 1e-2
                p.data[i] = saved + h
                let up = loss()
                p.data[i] = saved - h
                let down = loss()
                p.data[i] = saved
                let numeric = (up - down) / Double(2 * h)
                worst = max(worst, abs(numeric - Double(grad.data[i])))
                largest = max(largest, abs(numeric))
            }
        }
        #expect(largest > 0.1)
        #expect(worst / largest < 1e-2, "largest difference \(worst) against gradients up to \(largest)")
    }
}
