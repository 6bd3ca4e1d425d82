import Testing
import LoomTensor

@Suite struct ResampleTests {
    @Test func upsampleMatchesNaiveLoop() {
        let n = 2, h = 3, w = 5, c = 3
        let x = GradCheck.inputs([[n, h, w, c]])[0]
        let y = x.upsampleNearest2x()
        #expect(y.shape == [n, 2 * h, 2 * w, c])
        for b in 0..<n { for i in 0..<(2 * h) { for j in 0..<(2 * w) { for k in 0..<c {
            #expect(y.data[((b * 2 * h + i) * 2 * w + j) * c + k] == x.data[((b * h + i / 2) * w + j / 2) * c + k])
        } } } }
    }

    @Test(arguments: [(2, 2), (3, 2), (3, 1), (2, 3)])
    func avgPoolMatchesNaiveLoop(kernel: Int, stride: Int) {
        let n = 2, h = 7, w = 6, c = 3
        let x = GradCheck.inputs([[n, h, w, c]])[0]
        let y = x.avgPool2d(kernel: kernel, stride: stride)
        let ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1
        #expect(y.shape == [n, ho, wo, c])
        for b in 0..<n { for i in 0..<ho { for j in 0..<wo { for k in 0..<c {
            var acc = 0.0
            for di in 0..<kernel { for dj in 0..<kernel {
                acc += Double(x.data[((b * h + i * stride + di) * w + j * stride + dj) * c + k])
            } }
            #expect(abs(Double(y.data[((b * ho + i) * wo + j) * c + k]) - acc / Double(kernel * kernel)) < 1e-6)
        } } } }
        let xs = GradCheck.inputs([[2, 5, 7, 3]])
        #expect(GradCheck.maxError(xs) { $0[0].avgPool2d(kernel: kernel, stride: stride) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { let y = $0[0].avgPool2d(kernel: kernel, stride: stride); return y * y } < 2e-2)
    }

    @Test func upsampleGradients() {
        let xs = GradCheck.inputs([[2, 3, 5, 3]])
        #expect(GradCheck.maxError(xs) { $0[0].upsampleNearest2x() } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { let y = $0[0].upsampleNearest2x(); return y * y } < 2e-2)
        // The backward sums each 2×2 block of the output gradient.
        let x = Tensor.zeros([1, 1, 2, 1], requiresGrad: true)
        let g = Tensor((0..<8).map(Float.init), shape: [1, 2, 4, 1])
        let dx = grad(of: x.upsampleNearest2x(), wrt: [x], gradOutput: g)[0]
        #expect(dx.array == [10, 18])  // 0 + 1 + 4 + 5 and 2 + 3 + 6 + 7
    }
}
