import Foundation
import Testing
import LoomTensor

/// Runs `ConvBenchmark` when LOOM_CONV_BENCH is set (its value = repeats, default 5), e.g.
/// `LOOM_CONV_BENCH=5 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 swift test -c release --skip-build --filter ConvBenchmarkTests`.
@Suite struct ConvBenchmarkTests {
    @Test func w1ShapesMatchTheWorkload() {
        let shapes = ConvBenchmark.w1Shapes()
        #expect(shapes.count == 22)
        #expect(shapes.reduce(0) { $0 + $1.count } == 62)
        // Conv FLOPs per image: 725.5 MFLOP total minus attention matmuls (6 × 2·2·64²·64)
        // and the time-embedding/ResBlock linears.
        let flops = shapes.reduce(0.0) { acc, s in
            let out = s.shape.resolution / s.shape.stride
            return acc + Double(s.count * 2 * out * out * s.shape.cout * s.shape.cin * s.shape.kernel * s.shape.kernel)
        }
        // Time embedding 32→128→128; one 128→C projection per ResBlock (5 at 32, 12 at 64 channels).
        let embedding: Int = 2 * (32 * 128 + 128 * 128)
        let projections: Int = 2 * 128 * (5 * 32 + 12 * 64)
        let attention: Int = 6 * 2 * 2 * (64 * 64) * 64  // qkᵀ and attention·v, 64 tokens, 64 channels
        #expect(Int(flops) + embedding + projections + attention == 725_499_904)
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["LOOM_CONV_BENCH"] != nil))
    func benchmark() {
        let repeats = Int(ProcessInfo.processInfo.environment["LOOM_CONV_BENCH"] ?? "") ?? 5
        print(ConvBenchmark.run(repeats: repeats))
    }
}
