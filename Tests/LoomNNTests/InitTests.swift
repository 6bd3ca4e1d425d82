import Testing
import LoomTensor
import LoomNN

@Suite struct InitTests {
    /// (mean, standard deviation, largest magnitude) in double.
    func moments(_ t: Tensor) -> (mean: Double, std: Double, maxAbs: Double) {
        let xs = t.array.map(Double.init)
        let mean = xs.reduce(0, +) / Double(xs.count)
        let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count)
        return (mean, variance.squareRoot(), xs.map(abs).max()!)
    }

    @Test func fansOfLinearConvAndTransposedConv() {
        #expect(Init.fans([4, 3]) == (3, 4))
        #expect(Init.fans([8, 3, 3, 3]) == (27, 72))
        #expect(Init.fans([16, 8, 4, 4]) == (128, 256))  // ConvTranspose [I, O, kh, kw]: PyTorch's values
    }

    @Test func kaimingUniformDefaultIsOneOverSqrtFanIn() {
        var s = RandomStream(seed: 1, purpose: .initialization)
        let w = Tensor.zeros([64, 50])
        Init.kaimingUniform(w, stream: &s)
        let bound = 1 / 50.0.squareRoot()
        let m = moments(w)
        #expect(m.maxAbs <= bound && m.maxAbs > 0.97 * bound)
        #expect(abs(m.std - bound / 3.0.squareRoot()) < 0.05 * bound)  // U(±b) has std b/√3
        #expect(abs(m.mean) < 0.05 * bound)
    }

    @Test func kaimingReLUFanOutAndXavierBounds() {
        var s = RandomStream(key: 2)
        let w = Tensor.zeros([32, 16, 3, 3])
        Init.kaimingUniform(w, a: 0, mode: .fanOut, stream: &s)
        let relu = 6.0.squareRoot() / Double(32 * 9).squareRoot()
        #expect(moments(w).maxAbs <= relu && moments(w).maxAbs > 0.97 * relu)

        Init.xavierUniform(w, stream: &s)
        let xavier = (6 / Double(16 * 9 + 32 * 9)).squareRoot()
        #expect(moments(w).maxAbs <= xavier && moments(w).maxAbs > 0.97 * xavier)
        #expect(abs(moments(w).std - xavier / 3.0.squareRoot()) < 0.05 * xavier)
    }

    @Test func normalInitialisers() {
        var s = RandomStream(key: 3)
        let w = Tensor.zeros([100, 100])
        Init.normal(w, std: 0.02, stream: &s)
        var m = moments(w)
        #expect(abs(m.mean) < 1e-3 && abs(m.std - 0.02) < 1e-3)
        Init.kaimingNormal(w, stream: &s)
        m = moments(w)
        #expect(abs(m.std - (2.0 / 100).squareRoot()) < 0.05 * (2.0 / 100).squareRoot())
        Init.xavierNormal(w, gain: 2, stream: &s)
        #expect(abs(moments(w).std - 2 * (2.0 / 200).squareRoot()) < 0.01)
    }

    @Test func pytorchLayerDefaultAndConstants() {
        var s = RandomStream(key: 4)
        let w = Tensor.zeros([20, 5, 3, 3]), b = Tensor.zeros([20])
        Init.pytorchDefault(weight: w, bias: b, stream: &s)
        let bound = 1 / 45.0.squareRoot()
        #expect(moments(w).maxAbs <= bound && moments(b).maxAbs <= bound)
        #expect(moments(b).maxAbs > 0.3 * bound)
        Init.ones(b)
        #expect(b.array.allSatisfy { $0 == 1 })
        Init.zeros(b)
        #expect(b.array.allSatisfy { $0 == 0 })
        Init.constant(b, 0.25)
        #expect(b.array.allSatisfy { $0 == 0.25 })
    }

    @Test func seededAndAdvancing() {
        var s1 = RandomStream(seed: 7, purpose: .initialization), s2 = s1
        let a = Tensor.zeros([10, 10]), b = Tensor.zeros([10, 10])
        Init.kaimingUniform(a, stream: &s1)
        Init.kaimingUniform(b, stream: &s2)
        #expect(a.array == b.array)
        Init.kaimingUniform(b, stream: &s2)
        #expect(a.array != b.array)
    }
}
