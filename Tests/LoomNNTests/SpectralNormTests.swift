import COpenBLAS
import Testing
import LoomTensor
import LoomNN

/// W's singular values from LAPACK (`sgesvd_`, values only), largest first. The row-major
/// `[rows, -1]` matrix is read as its column-major transpose, which has the same values.
func singularValues(_ w: Tensor) -> [Float] {
    let rows = w.shape[0]
    var a = w.array
    var m = Int32(w.count / rows), n = Int32(rows), lda = m, ldu: Int32 = 1, ldvt: Int32 = 1
    var s = [Float](repeating: 0, count: Int(min(m, n)))
    var u: Float = 0, vt: Float = 0, info: Int32 = 0
    var jobU = CChar(UInt8(ascii: "N")), jobVT = CChar(UInt8(ascii: "N"))
    var lwork: Int32 = -1, size: Float = 0
    sgesvd_(&jobU, &jobVT, &m, &n, &a, &lda, &s, &u, &ldu, &vt, &ldvt, &size, &lwork, &info, 1, 1)  // workspace query
    lwork = Int32(size)
    var work = [Float](repeating: 0, count: Int(lwork))
    sgesvd_(&jobU, &jobVT, &m, &n, &a, &lda, &s, &u, &ldu, &vt, &ldvt, &work, &lwork, &info, 1, 1)
    precondition(info == 0, "sgesvd_ failed: info \(info)")
    return s
}

/// Largest error of `analytic` against central differences of `f` over the elements of `t`,
/// relative to the largest numeric gradient (at least 1e-2), as LoomTensorTests' GradCheck
/// measures it: a gradient off by a factor fails whatever its size.
func maxFiniteDifferenceError(_ t: Tensor, analytic: [Float], eps: Float = 1e-2, _ f: () -> Double) -> Float {
    var difference: Float = 0, scale: Float = 1e-2
    for i in 0..<t.count {
        let saved = t.data[i]
        t.data[i] = saved + eps
        let up = f()
        t.data[i] = saved - eps
        let down = f()
        t.data[i] = saved
        let numeric = Float((up - down) / Double(2 * eps))
        difference = max(difference, abs(numeric - analytic[i]))
        scale = max(scale, abs(numeric))
    }
    return difference / scale
}

/// ⟨y, w⟩ in double precision.
func weightedSum(_ y: Tensor, _ w: Tensor) -> Double {
    (0..<y.count).reduce(0.0) { $0 + Double(y.data[$1]) * Double(w.data[$1]) }
}

@Suite struct SpectralNormTests {
    @Test func sigmaConvergesToTheLargestSingularValue() {
        var s = RandomStream(key: 5)
        let conv = SNConv2d(4, 8, kernel: 3, padding: 1, stream: &s)
        let linear = SNLinear(12, 6, stream: &s)
        let embedding = SNEmbedding(10, 5, stream: &s)
        let x = Tensor.normal([2, 5, 5, 4], stream: &s), features = Tensor.normal([3, 12], stream: &s)
        for _ in 0..<100 {
            noGrad {
                _ = conv(x)
                _ = linear(features)
                _ = embedding([1, 4])
            }
        }
        let layers: [any SpectrallyNormalized] = [conv, linear, embedding]
        for layer in layers {
            let exact = Double(singularValues(layer.weightOrig)[0])
            #expect(abs(layer.sigma - exact) <= 1e-4 * exact, "σ \(layer.sigma) vs LAPACK \(exact)")
            // The weight a forward uses then has spectral norm 1.
            layer.eval()
            let normalized = noGrad { layer.normalizedWeight() }
            #expect(abs(singularValues(normalized)[0] - 1) <= 1e-4)
        }
        // The buffers stay unit vectors.
        for v in [conv.weightU, conv.weightV] {
            #expect(abs(v.array.reduce(0) { $0 + Double($1) * Double($1) } - 1) < 1e-5)
        }
    }

    @Test func gradientThroughSigmaMatchesFiniteDifferences() {
        var s = RandomStream(key: 6)
        let conv = SNConv2d(2, 3, kernel: 3, stride: 2, padding: 1, stream: &s)
        conv.weightOrig.assign(Tensor.uniform(conv.weightOrig.shape, low: -1, high: 1, stream: &s))
        let x = Tensor.uniform([2, 5, 5, 2], low: -1, high: 1, stream: &s)
        let w = Tensor.uniform([2, 3, 3, 3], low: 0.5, high: 1.5, stream: &s)
        // A training forward: one power iteration, then the loss with u, v as constants.
        let u0 = conv.weightU.array
        (conv(x) * w).sum().backward()
        #expect(conv.weightU.array != u0)
        let analytic = conv.weightOrig.grad!.array, biasGrad = conv.bias!.grad!.array
        // The same function with those u and v fixed: evaluation mode.
        conv.eval()
        let loss = { noGrad { weightedSum(conv(x), w) } }
        // Measured 4e-5; dropping σ's term from the gradient gives 1.5e-2.
        #expect(maxFiniteDifferenceError(conv.weightOrig, analytic: analytic, loss) < 1e-3)
        #expect(maxFiniteDifferenceError(conv.bias!, analytic: biasGrad, loss) < 1e-3)
        // σ's own term matters: without it the gradient would be g/σ alone.
        let sigma = noGrad { (conv.weightOrig / conv.normalizedWeight()).array[0] }
        conv.weightOrig.grad = nil
        let plain = Tensor(conv.weightOrig.array.map { $0 / sigma }, shape: conv.weightOrig.shape, requiresGrad: true)
        (conv2d(x, weight: plain, bias: conv.bias, stride: 2, padding: 1) * w).sum().backward()
        let naive = plain.grad!.array.map { $0 / sigma }
        #expect(zip(naive, analytic).map { abs($0 - $1) }.max()! > 1e-2)
    }

    @Test func secondOrderGradientsReachWeightOrig() {
        var s = RandomStream(key: 7)
        let conv = SNConv2d(2, 3, kernel: 3, padding: 1, stream: &s)
        conv.weightOrig.assign(Tensor.uniform(conv.weightOrig.shape, low: -1, high: 1, stream: &s))
        conv.eval()
        let x = Tensor.uniform([2, 4, 4, 2], low: -1, high: 1, stream: &s)
        x.requiresGrad = true
        let w = Tensor.uniform([2, 4, 4, 3], low: 0.5, high: 1.5, stream: &s)
        // ‖∂⟨conv(x)², w⟩/∂x‖²: second order through the square, the conv and σ.
        let penalty = { () -> Tensor in
            let g = grad(of: (conv(x).square() * w).sum(), wrt: [x], createGraph: true)[0]
            return g.square().sum()
        }
        penalty().backward()
        let analytic = conv.weightOrig.grad!.array
        #expect(maxFiniteDifferenceError(conv.weightOrig, analytic: analytic, eps: 1e-3) { Double(penalty().item) } < 1e-2)
    }

    @Test func evaluationKeepsTheVectorsAndTrainingIteratesThem() {
        var s = RandomStream(key: 8)
        let linear = SNLinear(6, 4, stream: &s)
        let x = Tensor.normal([3, 6], stream: &s)
        linear.eval()
        let (u0, v0) = (linear.weightU.array, linear.weightV.array)
        let y0 = noGrad { linear(x) }.array
        let y1 = noGrad { linear(x) }.array
        #expect(linear.weightU.array == u0 && linear.weightV.array == v0 && y0 == y1)
        linear.train()
        _ = noGrad { linear(x) }
        #expect(linear.weightU.array != u0 && linear.weightV.array != v0)
    }

    @Test func stateDictNamesAndRoundTrip() throws {
        var s = RandomStream(key: 9)
        let conv = SNConv2d(4, 8, kernel: 3, stream: &s)
        #expect(conv.stateDict().map(\.0) == ["bias", "weight_orig", "weight_u", "weight_v"])
        #expect(conv.stateDict().map(\.1.shape) == [[8], [8, 4, 3, 3], [8], [36]])
        #expect(conv.namedParameters().map(\.0) == ["bias", "weight_orig"])
        #expect(SNConv2d(4, 8, kernel: 3, bias: false, stream: &s).stateDict().map(\.0) == ["weight_orig", "weight_u", "weight_v"])
        #expect(SNLinear(5, 2, stream: &s).stateDict().map(\.1.shape) == [[2], [2, 5], [2], [5]])
        #expect(SNEmbedding(10, 7, stream: &s).stateDict().map(\.0) == ["weight_orig", "weight_u", "weight_v"])
        #expect(SNEmbedding(10, 7, stream: &s).stateDict().map(\.1.shape) == [[10, 7], [10], [7]])

        // A checkpoint carries u and v exactly: a loaded copy computes the same outputs.
        let x = Tensor.normal([1, 5, 5, 4], stream: &s)
        for _ in 0..<3 { _ = noGrad { conv(x) } }
        let copy = SNConv2d(4, 8, kernel: 3, stream: &s)
        try copy.loadStateDict(conv.stateDict())
        #expect(copy.weightU.array == conv.weightU.array)
        #expect(noGrad { copy(x) }.array == noGrad { conv(x) }.array)
    }

    @Test func initialVectorsAreUnitAndReproducible() {
        var a = RandomStream(key: 10), b = RandomStream(key: 10)
        let l1 = SNLinear(20, 9, stream: &a), l2 = SNLinear(20, 9, stream: &b)
        #expect(l1.weightU.array == l2.weightU.array && l1.weightV.array == l2.weightV.array)
        for v in [l1.weightU, l1.weightV] {
            #expect(abs(v.array.reduce(0) { $0 + Double($1) * Double($1) } - 1) < 1e-6)
        }
    }
}
