import Testing
import LoomTensor

/// The ops of Shape, Softmax and Resample split large loops across threads; their results
/// must be bitwise the same at one and at two threads.
@Suite struct OpsThreadCountTests {
    /// Every op's forward values and input gradient at `threads` threads: (Loom's own loops,
    /// OpenBLAS products).
    private func results(threads: Int) -> (loops: [[Float]], blas: [[Float]]) {
        Parallel.withThreads(threads) { resultsAtCurrentThreadCount() }
    }

    private func resultsAtCurrentThreadCount() -> (loops: [[Float]], blas: [[Float]]) {
        var s = RandomStream(key: 11)
        let x = Tensor.uniform([4, 33, 40, 24], low: -2, high: 2, stream: &s)
        x.requiresGrad = true
        let w = Tensor.uniform([17, 24], low: -1, high: 1, stream: &s), b = Tensor.uniform([17], stream: &s)
        var loops: [[Float]] = []
        let ops: [(Tensor) -> Tensor] = [
            { $0.permuted([0, 2, 1, 3]) }, { $0.permuted([0, 3, 1, 2]) }, { $0.permuted([0, 2, 3, 1]) },
            { $0.sliced(axis: 2, 3..<37).padded([(0, 0), (1, 2), (0, 0), (3, 4)]) },
            { Tensor.concat([$0, $0 * 2], axis: 1).sliced(axis: 1, 20..<53) },
            { $0.reshaped([132, 960]).gatherRows(Array(0..<132) + Array(0..<132)).reshaped([8, 33, 40, 24]).sliced(axis: 0, 2..<6) },
            { $0.softmax() }, { $0.logSoftmax() }, { $0.softmax(axis: 1) }, { $0.logSoftmax(axis: 2) },
            { $0.upsampleNearest2x().avgPool2d(kernel: 2, stride: 2) },
            { $0.avgPool2d(kernel: 3, stride: 1).padded([(0, 0), (1, 1), (1, 1), (0, 0)]) },
            // Broadcast products whose backward sums over axes (kept leading axis: threaded).
            { $0 * $0.sliced(axis: 1, 0..<1) }, { $0 * $0.sliced(axis: 0, 0..<1) },
            { let c = $0.chunked(3, axis: 3); return c[0] * c[1] + c[2] },
        ]
        for f in ops {
            let y = f(x)
            loops.append(y.array)
            loops.append(grad(of: y, wrt: [x], gradOutput: Tensor(repeating: 0.5, shape: y.shape) * y)[0].array)
        }
        let logits = x.reshaped([-1, 40])
        loops.append(grad(of: crossEntropyLoss(logits, (0..<logits.shape[0]).map { $0 % 40 }, labelSmoothing: 0.1), wrt: [x])[0].array)
        let blas = [
            scaledDotProductAttention(query: x, key: x, value: x).array,
            linear(x, weight: w, bias: b).array,
            matmul(x.reshaped([-1, 96]), x.reshaped([-1, 96]), transposeA: true).array,
        ]
        return (loops, blas)
    }

    @Test func oneAndTwoThreadsAgree() {
        let one = results(threads: 1), two = results(threads: 2)
        for (i, (a, b)) in zip(one.loops, two.loops).enumerated() {
            let differing = zip(a, b).filter { $0 != $1 }.count
            #expect(a.count == b.count && differing == 0, "result \(i): \(differing) of \(a.count) differ")
        }
        // Loom splits a GEMM's rows or columns over threads; every element still sums over
        // all of K in one sgemm call, so the products agree bitwise too.
        for (i, (a, b)) in zip(one.blas, two.blas).enumerated() {
            let differing = zip(a, b).filter { $0 != $1 }.count
            #expect(a.count == b.count && differing == 0, "product \(i): \(differing) of \(a.count) differ")
        }
    }
}
