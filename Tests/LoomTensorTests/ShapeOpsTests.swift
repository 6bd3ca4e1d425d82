import Testing
import LoomTensor

/// Row-major multi-index of `linear` in `shape`.
private func unravel(_ linear: Int, _ shape: [Int]) -> [Int] {
    var rem = linear
    var idx = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) { idx[d] = rem % shape[d]; rem /= shape[d] }
    return idx
}

/// Row-major linear position of `index` in `shape`.
private func ravel(_ index: [Int], _ shape: [Int]) -> Int {
    zip(index, shape).reduce(0) { $0 * $1.1 + $1.0 }
}

/// Permutation by definition: out[i] = x[i mapped back through perm].
private func naivePermute(_ x: Tensor, _ perm: [Int]) -> [Float] {
    let outShape = perm.map { x.shape[$0] }
    return (0..<x.count).map { i in
        let o = unravel(i, outShape)
        var src = [Int](repeating: 0, count: x.rank)
        for (d, p) in perm.enumerated() { src[p] = o[d] }
        return x.data[ravel(src, x.shape)]
    }
}

@Suite struct ShapeOpsTests {
    @Test(arguments: [
        ([3, 4, 5], [2, 0, 1]), ([3, 4, 5], [0, 2, 1]), ([3, 4, 5], [1, 0, 2]),
        ([2, 3, 4, 5], [0, 2, 1, 3]), ([2, 3, 4, 5], [0, 3, 1, 2]), ([2, 3, 4, 5], [0, 2, 3, 1]),
        ([2, 3, 4, 5], [3, 2, 1, 0]), ([2, 1, 4, 1], [3, 2, 0, 1]),
        ([2, 37, 35, 3], [0, 3, 1, 2]), ([2, 3, 37, 35], [0, 2, 3, 1]), ([70, 33], [1, 0]),
        ([2, 33, 3, 40], [0, 2, 1, 3]),
    ] as [([Int], [Int])])
    func permuteMatchesDefinition(shape: [Int], perm: [Int]) {
        let x = GradCheck.inputs([shape])[0]
        let y = x.permuted(perm)
        #expect(y.shape == perm.map { shape[$0] })
        #expect(y.array == naivePermute(x, perm))
    }

    @Test func permuteAndTransposeGradients() {
        let x3 = GradCheck.inputs([[3, 4, 5]])
        #expect(GradCheck.maxError(x3) { $0[0].permuted([2, 0, 1]) } < 1e-2)
        #expect(GradCheck.maxError(x3) { $0[0].transposed(-1, 0) } < 1e-2)
        let x4 = GradCheck.inputs([[2, 3, 4, 5]])
        #expect(GradCheck.maxError(x4) { $0[0].permuted([0, 2, 1, 3]) } < 1e-2)
        #expect(GradCheck.maxError(x4) { $0[0].permuted([0, -1, 1, 2]) } < 1e-2)
        #expect(GradCheck.maxError(x4) { $0[0].permuted([3, 1, 2, 0]) } < 1e-2)
        let x = GradCheck.inputs([[2, 3, 4]])[0]
        #expect(x.transposed(0, -1).array == x.permuted([2, 1, 0]).array)
        // The backward of the backward is another permute: checked through a product.
        #expect(GradCheck.maxSecondOrderError(x4) { let y = $0[0].permuted([0, 3, 1, 2]); return y * y } < 2e-2)
    }

    @Test func sliceAndPad() {
        let x = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        #expect(x.sliced(axis: 1, 1..<3).array == [4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23])
        #expect(x.sliced(axis: -1, 2..<3).array == [2, 6, 10, 14, 18, 22])
        #expect(x.sliced(axis: 0, 1..<1).shape == [0, 3, 4])
        let p = x.padded([(0, 0), (1, 0), (2, 1)], value: -1)
        #expect(p.shape == [2, 4, 7])
        for i in 0..<p.count {
            let idx = unravel(i, p.shape)
            let inside = idx[1] >= 1 && idx[2] >= 2 && idx[2] < 6
            let expected = inside ? x.data[ravel([idx[0], idx[1] - 1, idx[2] - 2], x.shape)] : -1
            #expect(p.data[i] == expected)
        }
        let xs = GradCheck.inputs([[3, 4, 5]])
        #expect(GradCheck.maxError(xs) { $0[0].sliced(axis: 1, 1..<3) } < 1e-2)
        #expect(GradCheck.maxError(xs) { $0[0].sliced(axis: -1, 0..<4) } < 1e-2)
        #expect(GradCheck.maxError(xs) { $0[0].padded([(1, 2), (0, 0), (3, 1)], value: 0.5) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { let y = $0[0].sliced(axis: 2, 1..<4).padded([(0, 1), (2, 0), (1, 1)]); return y * y } < 2e-2)
    }

    @Test func concatSplitChunk() {
        let a = Tensor([1, 2, 3, 4], shape: [2, 2]), b = Tensor([5, 6], shape: [2, 1])
        #expect(Tensor.concat([a, b], axis: 1).array == [1, 2, 5, 3, 4, 6])
        #expect(Tensor.concat([a, b.reshaped([1, 2])], axis: 0).array == [1, 2, 3, 4, 5, 6])
        let xs = GradCheck.inputs([[2, 3, 5], [2, 1, 5], [2, 4, 5]])
        #expect(GradCheck.maxError(xs) { Tensor.concat($0, axis: -2) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { let y = Tensor.concat($0, axis: 1); return y * y } < 2e-2)

        let x = Tensor((0..<14).map(Float.init), shape: [2, 7])
        let parts = x.split(sizes: [2, 0, 5], axis: 1)
        #expect(parts.map(\.shape) == [[2, 2], [2, 0], [2, 5]])
        #expect(parts[2].array == [2, 3, 4, 5, 6, 9, 10, 11, 12, 13])
        #expect(x.chunked(3, axis: -1).map { $0.shape[1] } == [3, 3, 1])
        #expect(Tensor.zeros([6]).chunked(4, axis: 0).map(\.count) == [2, 2, 2])
        #expect(Tensor.concat(x.chunked(3, axis: 1), axis: 1).array == x.array)
        let ys = GradCheck.inputs([[3, 7]])
        #expect(GradCheck.maxError(ys) { x in
            let p = x[0].split(sizes: [3, 4], axis: 1)
            return Tensor.concat([p[1] * 2, p[0]], axis: 1)
        } < 1e-2)
        #expect(GradCheck.maxError(ys) { x in
            let c = x[0].chunked(2, axis: 0)
            return c[0] * c[0] + c[1].sum()
        } < 1e-2)
    }

    @Test func repeatTilesLikeTorch() {
        let x = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let y = x.repeated([2, 1, 2])
        #expect(y.shape == [2, 2, 6])
        for i in 0..<y.count {
            let idx = unravel(i, y.shape)
            #expect(y.data[i] == x.data[ravel([idx[1] % 2, idx[2] % 3], x.shape)])
        }
        let xs = GradCheck.inputs([[2, 3]])
        #expect(GradCheck.maxError(xs) { $0[0].repeated([3, 2]) } < 1e-2)
        #expect(GradCheck.maxError(xs) { $0[0].repeated([2, 1, 3]) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { let y = $0[0].repeated([2, 2]); return y * y } < 2e-2)
    }

    @Test func gatherRowsIsAnEmbedding() {
        let table = Tensor((0..<12).map(Float.init), shape: [4, 3])
        #expect(table.gatherRows([2, 0, 2]).array == [6, 7, 8, 0, 1, 2, 6, 7, 8])
        let x3 = Tensor((0..<24).map(Float.init), shape: [4, 3, 2])
        #expect(x3.gatherRows([3]).shape == [1, 3, 2])
        #expect(x3.gatherRows([3]).array == Array(x3.array[18...]))
        // Repeated indices accumulate in backward.
        let w = Tensor(repeating: 0, shape: [5, 3], requiresGrad: true)
        w.gatherRows([1, 4, 1, 1]).sum().backward()
        #expect(w.grad!.array == [0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 0, 0, 1, 1, 1])
        let xs = GradCheck.inputs([[5, 2, 3]])
        #expect(GradCheck.maxError(xs) { $0[0].gatherRows([4, 0, 4, 2]) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(xs) { let y = $0[0].gatherRows([1, 3, 1]); return y * y } < 2e-2)
    }
}

/// First-order backward adds a crop's gradient straight into its window of the input's
/// gradient; the result must equal the closed form, also when the input has other uses and
/// when the tape records the backward (second order).
@Suite struct CropGradientTests {
    /// y = Σ_k (k+1)·Σ chunk_k + 0.5·Σ x + 2·Σ x[:, 3..<7]: dy/dx[i, j, l] = ⌊j/2⌋ + 1 + 0.5 + 2·[3 ≤ j < 7].
    private func gradient(createGraph: Bool) -> [Float] {
        var s = RandomStream(key: 3)
        let x = Tensor.uniform([3, 8, 5], low: -1, high: 1, stream: &s)
        x.requiresGrad = true
        var y = x.sum() * 0.5
        for (k, part) in x.chunked(4, axis: 1).enumerated() { y = y + part.sum() * Float(k + 1) }
        y = y + x.sliced(axis: 1, 3..<7).sum() * 2
        return grad(of: y, wrt: [x], createGraph: createGraph)[0].array
    }

    @Test func windowGradientsMatchTheClosedForm() {
        var expected: [Float] = []
        for _ in 0..<3 { for j in 0..<8 { for _ in 0..<5 { expected.append(Float(j / 2 + 1) + 0.5 + ((3..<7).contains(j) ? 2 : 0)) } } }
        #expect(gradient(createGraph: false) == expected)
        #expect(gradient(createGraph: true) == expected)
    }
}
