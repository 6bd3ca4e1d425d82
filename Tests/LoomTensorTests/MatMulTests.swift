import Testing
import LoomTensor

/// op(a)·op(b) for one pair of row-major matrices by the triple loop, in double precision.
private func naiveMatMul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, m: Int, n: Int, k: Int,
                         transA: Bool, transB: Bool) -> [Double] {
    var out = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var acc = 0.0
            for p in 0..<k {
                let av = transA ? a[p * m + i] : a[i * k + p]
                let bv = transB ? b[j * k + p] : b[p * n + j]
                acc += Double(av) * Double(bv)
            }
            out[i * n + j] = acc
        }
    }
    return out
}

private func maxDiff(_ x: [Float], _ y: [Double]) -> Double {
    zip(x, y).map { abs(Double($0) - $1) }.max() ?? 0
}

@Suite struct MatMulTests {
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matchesTripleLoop(transA: Bool, transB: Bool) {
        let m = 5, k = 7, n = 3
        let xs = GradCheck.inputs([transA ? [k, m] : [m, k], transB ? [n, k] : [k, n]])
        let c = matmul(xs[0], xs[1], transposeA: transA, transposeB: transB)
        #expect(c.shape == [m, n])
        #expect(maxDiff(c.array, naiveMatMul(xs[0].data, xs[1].data, m: m, n: n, k: k, transA: transA, transB: transB)) < 1e-5)
        #expect(GradCheck.maxError(xs) { matmul($0[0], $0[1], transposeA: transA, transposeB: transB) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { matmul($0[0], $0[1], transposeA: transA, transposeB: transB) } < 1e-2)
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func batchedWithBroadcasting(transA: Bool, transB: Bool) {
        let m = 3, k = 4, n = 5
        let aShape = [2, 1] + (transA ? [k, m] : [m, k]), bShape = [3] + (transB ? [n, k] : [k, n])
        let xs = GradCheck.inputs([aShape, bShape])
        let c = matmul(xs[0], xs[1], transposeA: transA, transposeB: transB)
        #expect(c.shape == [2, 3, m, n])
        for i in 0..<2 {
            for j in 0..<3 {
                let expected = naiveMatMul(xs[0].data + i * m * k, xs[1].data + j * k * n, m: m, n: n, k: k,
                                           transA: transA, transB: transB)
                let got = Array(c.array[((i * 3 + j) * m * n)..<((i * 3 + j + 1) * m * n)])
                #expect(maxDiff(got, expected) < 1e-5)
            }
        }
        #expect(GradCheck.maxError(xs) { matmul($0[0], $0[1], transposeA: transA, transposeB: transB) } < 1e-2)
    }

    @Test func batchedAgainstSharedMatrix() {
        // [2, 3, 4] · [4, 5]: the batch folds into one GEMM; b's gradient sums over the batch.
        let xs = GradCheck.inputs([[2, 3, 4], [4, 5]])
        let c = matmul(xs[0], xs[1])
        #expect(maxDiff(c.array, naiveMatMul(xs[0].data, xs[1].data, m: 6, n: 5, k: 4, transA: false, transB: false)) < 1e-5)
        #expect(GradCheck.maxError(xs) { matmul($0[0], $0[1]) } < 1e-2)
        let ys = GradCheck.inputs([[4, 3], [2, 4, 5]])
        #expect(GradCheck.maxError(ys) { matmul($0[0], $0[1], transposeA: true) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(ys) { matmul($0[0], $0[1], transposeA: true) } < 1e-2)
    }

    @Test func linearMatchesDefinition() {
        let xs = GradCheck.inputs([[2, 3, 5], [4, 5], [4]])
        let (x, w, b) = (xs[0], xs[1], xs[2])
        let y = linear(x, weight: w, bias: b)
        #expect(y.shape == [2, 3, 4])
        let noBias = linear(x, weight: w, bias: nil)
        for r in 0..<6 {
            for o in 0..<4 {
                var acc = 0.0
                for i in 0..<5 { acc += Double(x.data[r * 5 + i]) * Double(w.data[o * 5 + i]) }
                #expect(abs(Double(noBias.data[r * 4 + o]) - acc) < 1e-5)
                #expect(abs(Double(y.data[r * 4 + o]) - acc - Double(b.data[o])) < 1e-5)
            }
        }
    }

    @Test func linearGradients() {
        let xs = GradCheck.inputs([[2, 3, 5], [4, 5], [4]])
        #expect(GradCheck.maxError(xs) { linear($0[0], weight: $0[1], bias: $0[2]) } < 1e-2)
        #expect(GradCheck.maxError(Array(xs[0..<2])) { linear($0[0], weight: $0[1], bias: nil) } < 1e-2)
        // Second order from x and from the weight (the bias term is linear and drops out).
        #expect(GradCheck.maxSecondOrderError(xs) { linear($0[0], weight: $0[1], bias: $0[2]) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError([xs[1], xs[0], xs[2]]) { linear($0[1], weight: $0[0], bias: $0[2]) } < 1e-2)
        // Through a nonlinearity, so the Hessian has x–x terms too.
        #expect(GradCheck.maxSecondOrderError(Array(xs[0..<2])) { linear($0[0], weight: $0[1], bias: nil).tanh() } < 2e-2)
    }
}
