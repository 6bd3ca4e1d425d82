import Foundation
import Testing
import LoomTensor

/// The profiler charges forward ops, backward functions and named marks, never counts a
/// stretch of time twice, and ignores other threads.
@Suite struct OpProfilerTests {
    @Test func chargesEachOpOnceAndNoTimeTwice() {
        var s = RandomStream(key: 3)
        let x = Tensor.uniform([4, 6, 6, 16], low: -1, high: 1, stream: &s)
        let w = Tensor.uniform([16, 16, 3, 3], low: -0.2, high: 0.2, stream: &s)
        x.requiresGrad = true
        w.requiresGrad = true
        let t0 = DispatchTime.now().uptimeNanoseconds
        OpProfiler.start()
        for _ in 0..<3 {
            let y = conv2d(x, weight: w, bias: nil, padding: 1).silu()
            y.sum().backward()
            OpProfiler.mark("between steps")
        }
        OpProfiler.stop()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        let byName = Dictionary(uniqueKeysWithValues: OpProfiler.report.map { ($0.name, $0) })
        for name in ["conv2d", "silu", "sum", "conv2d backward", "silu backward", "sum backward", "between steps"] {
            #expect(byName[name]?.calls == 3, "\(name): \(byName[name]?.calls ?? 0) calls, want 3")
        }
        // conv2d's backward runs the backward-data op inside itself: charged to conv2d backward only.
        #expect(byName["conv_backward_data"] == nil)
        let charged = OpProfiler.report.reduce(0) { $0 + $1.seconds }
        #expect(charged > 0 && charged <= elapsed, "charged \(charged) s of \(elapsed) s")
        #expect(OpProfiler.table(steps: 3).contains("conv2d backward"))
    }
}
