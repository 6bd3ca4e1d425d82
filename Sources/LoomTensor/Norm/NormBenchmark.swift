import Foundation

/// Timings of the normalisation kernels on the U-Net's hot shape.
public enum NormBenchmark {
    /// Best-of-`repeats` milliseconds (robust to other processes on a shared machine) of
    /// `groupNormSiLU` forward and of its backward (dx, dweight and dbias from g) on
    /// x = [64, 16, 16, 64] (PyTorch's 64×64×16×16), 8 groups with affine, at the current
    /// `Parallel.threads`. Buffers come from the pool, so after the warm-up calls no step
    /// goes back to the system allocator.
    public static func groupNormSiLU(repeats: Int) -> (forwardMs: Double, backwardMs: Double) {
        var stream = RandomStream(key: 2024)
        let x = Tensor.normal([64, 16, 16, 64], stream: &stream)
        let weight = Tensor.uniform([64], low: 0.5, high: 1.5, stream: &stream)
        let bias = Tensor.uniform([64], low: -0.5, high: 0.5, stream: &stream)
        let g = Tensor.normal(x.shape, stream: &stream)
        for t in [x, weight, bias] { t.requiresGrad = true }
        var forward: [Double] = [], backward: [Double] = []
        for i in 0..<(max(1, repeats) + 2) {  // two warm-up rounds fill the buffer pool
            let t0 = DispatchTime.now().uptimeNanoseconds
            let y = noGrad { LoomTensor.groupNormSiLU(x, groups: 8, weight: weight, bias: bias) }
            let t1 = DispatchTime.now().uptimeNanoseconds
            _ = y
            let taped = LoomTensor.groupNormSiLU(x, groups: 8, weight: weight, bias: bias)
            let t2 = DispatchTime.now().uptimeNanoseconds
            let grads = grad(of: taped, wrt: [x, weight, bias], gradOutput: g)
            let t3 = DispatchTime.now().uptimeNanoseconds
            precondition(grads.count == 3)
            if i >= 2 {
                forward.append(Double(t1 - t0) / 1e6)
                backward.append(Double(t3 - t2) / 1e6)
            }
        }
        return (forward.min()!, backward.min()!)
    }
}
