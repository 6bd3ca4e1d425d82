import Foundation

/// Speed of the three convolution passes on every convolution shape of workload W1
/// (`ddpm-unet-s`, WORKLOADS.md), weighted into one training step and set against
/// single-thread sgemm, the practical peak of this machine.
public enum ConvBenchmark {
    /// One distinct W1 convolution (square input `resolution`², padding k / 2).
    public struct Shape: Hashable, Sendable {
        /// Input channels.
        public var cin: Int
        /// Output channels.
        public var cout: Int
        /// Kernel size (3 or 1).
        public var kernel: Int
        /// Stride (2 for the downsampling convs).
        public var stride: Int
        /// Input height and width.
        public var resolution: Int
    }

    /// W1's convolutions in order of first appearance, with how many times one forward pass
    /// runs each. Derived by walking the U-Net as WORKLOADS.md describes it (its parameter
    /// count, 1,623,169, and 725.5 MFLOP per image check out with this walk).
    public static func w1Shapes() -> [(shape: Shape, count: Int)] {
        var list: [Shape] = []
        func conv(_ cin: Int, _ cout: Int, _ k: Int, _ res: Int, stride: Int = 1) {
            list.append(Shape(cin: cin, cout: cout, kernel: k, stride: stride, resolution: res))
        }
        func resBlock(_ cin: Int, _ cout: Int, _ res: Int) {
            conv(cin, cout, 3, res)
            conv(cout, cout, 3, res)
            if cin != cout { conv(cin, cout, 1, res) }  // skip projection
        }
        func attention(_ c: Int, _ res: Int) {
            conv(c, 3 * c, 1, res)  // q, k, v
            conv(c, c, 1, res)      // output projection
        }
        let channels = [32, 64, 64], resolutions = [32, 16, 8]
        conv(1, 32, 3, 32)  // stem
        var skips = [32], c = 32
        for level in 0..<3 {
            for _ in 0..<2 {
                resBlock(c, channels[level], resolutions[level])
                c = channels[level]
                if resolutions[level] == 8 { attention(c, 8) }
                skips.append(c)
            }
            if level < 2 {  // downsample: conv3×3 stride 2
                conv(c, c, 3, resolutions[level], stride: 2)
                skips.append(c)
            }
        }
        resBlock(c, c, 8); attention(c, 8); resBlock(c, c, 8)  // middle
        for level in (0..<3).reversed() {
            for _ in 0..<3 {
                resBlock(c + skips.removeLast(), channels[level], resolutions[level])
                c = channels[level]
                if resolutions[level] == 8 { attention(c, 8) }
            }
            if level > 0 { conv(c, c, 3, resolutions[level - 1]) }  // upsample: nearest ×2, conv3×3
        }
        conv(c, 1, 3, 32)  // output
        var counts: [Shape: Int] = [:]
        var order: [Shape] = []
        for s in list {
            if counts[s] == nil { order.append(s) }
            counts[s, default: 0] += 1
        }
        return order.map { ($0, counts[$0]!) }
    }

    /// Timings of one shape's three passes, in seconds.
    public struct Timing: Sendable {
        /// The convolution.
        public var shape: Shape
        /// Occurrences in one W1 forward.
        public var count: Int
        /// FLOPs of one pass at the measured batch.
        public var flops: Double
        /// Best and median of forward (bias fused), backward-data, backward-weights (with
        /// diff_bias).
        public var best: [Double], median: [Double]
        /// oneDNN's implementation of each pass.
        public var implementations: [String]
        /// Whether a training step runs backward-data (not for the stem: the images need no gradient).
        public var needsBackwardData: Bool
    }

    /// All W1 shapes timed, with the sgemm reference.
    public struct Report: CustomStringConvertible, Sendable {
        /// Batch size measured.
        public var batch: Int
        /// One entry per distinct shape.
        public var timings: [Timing]
        /// cblas_sgemm 2048³ speed in GFLOP/s under the same thread settings.
        public var sgemmGFLOPS: Double

        /// Seconds of convolution in one W1 step (forward + backward), from best or median times.
        public func stepSeconds(median: Bool = false) -> Double {
            timings.reduce(0) { acc, t in
                let s = median ? t.median : t.best
                return acc + Double(t.count) * (s[0] + (t.needsBackwardData ? s[1] : 0) + s[2])
            }
        }

        /// FLOPs of convolution in one W1 step.
        public var stepFlops: Double {
            timings.reduce(0) { $0 + Double($1.count) * $1.flops * ($1.needsBackwardData ? 3 : 2) }
        }

        public var description: String {
            func ms(_ s: Double) -> String { String(format: "%7.3f", s * 1e3) }
            func gf(_ f: Double, _ s: Double) -> String { String(format: "%5.0f", f / s / 1e9) }
            let env = ProcessInfo.processInfo.environment
            var lines = [
                "W1 convolutions, batch \(batch), oneDNN \(TensorNative.dnnlVersion) \(TensorNative.dnnlISA), "
                    + "OMP_NUM_THREADS=\(env["OMP_NUM_THREADS"] ?? "unset"); times best of repeats (median in totals)",
                "shape (Cin→Cout k s @res)  ×n |  fwd ms  GF/s | bwd-d ms GF/s | bwd-w ms GF/s | implementations",
            ]
            for t in timings {
                let s = t.shape
                let name = "\(s.cin)→\(s.cout) k\(s.kernel) s\(s.stride) @\(s.resolution)"
                var cols = [name.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %3d", t.count)]
                for p in 0..<3 { cols.append("\(ms(t.best[p])) \(gf(t.flops, t.best[p]))") }
                cols.append(Set(t.implementations).sorted().joined(separator: ", "))
                lines.append(cols.joined(separator: " | "))
            }
            let flops = stepFlops, best = stepSeconds(), median = stepSeconds(median: true)
            lines.append(String(format: "one W1 step: %.1f GFLOP of convolution (stem without backward-data) in %.1f ms "
                                + "= %.1f GFLOP/s (median %.1f ms = %.1f GFLOP/s)",
                                flops / 1e9, best * 1e3, flops / best / 1e9, median * 1e3, flops / median / 1e9))
            lines.append(String(format: "cblas_sgemm 2048³: %.1f GFLOP/s", sgemmGFLOPS)
                         + " (OpenBLAS \(TensorNative.blasCoreName), \(TensorNative.blasThreads) thread(s)) → "
                         + String(format: "W1 convolutions at %.1f %% of sgemm (median %.1f %%)",
                                  100 * flops / best / 1e9 / sgemmGFLOPS, 100 * flops / median / 1e9 / sgemmGFLOPS))
            return lines.joined(separator: "\n")
        }
    }

    /// Times every W1 shape: one warm-up call per pass (creates the primitives), then
    /// `repeats` timed calls.
    public static func measure(batch: Int = 64, repeats: Int) -> Report {
        precondition(repeats >= 1, "ConvBenchmark: repeats must be at least 1")
        var stream = RandomStream(key: 2024)
        let timings = noGrad { () -> [Timing] in
            w1Shapes().map { shape, count in
                let k = shape.kernel
                let x = Tensor.uniform([batch, shape.resolution, shape.resolution, shape.cin], low: -1, high: 1, stream: &stream)
                let w = Tensor.uniform([shape.cout, shape.cin, k, k], low: -0.1, high: 0.1, stream: &stream)
                let b = Tensor.uniform([shape.cout], low: -0.1, high: 0.1, stream: &stream)
                let geo = ConvGeometry.conv(input: x.shape, weight: w.shape, stride: shape.stride, padding: k / 2)
                let g = Tensor.uniform(geo.dstShape, low: -1, high: 1, stream: &stream)
                let passes: [() -> Void] = [
                    { _ = ConvPrimitive.forward(geo, src: x, weight: w, bias: b) },
                    { _ = ConvPrimitive.backwardData(geo, diffDst: g, weight: w) },
                    { _ = ConvPrimitive.backwardWeights(geo, src: x, diffDst: g, withBias: true) },
                ]
                var best: [Double] = [], median: [Double] = []
                for pass in passes {
                    pass()
                    var times: [Double] = []
                    for _ in 0..<repeats {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        pass()
                        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
                    }
                    times.sort()
                    best.append(times[0])
                    median.append(times[times.count / 2])
                }
                let impls = [ConvPrimitive.get(geo, .forward, bias: true), ConvPrimitive.get(geo, .backwardData, bias: false),
                             ConvPrimitive.get(geo, .backwardWeights, bias: true)].map(\.main.implementation)
                return Timing(shape: shape, count: count, flops: geo.flops, best: best, median: median,
                              implementations: impls, needsBackwardData: shape.cin != 1)  // cin 1: the stem, on the images
            }
        }
        return Report(batch: batch, timings: timings, sgemmGFLOPS: TensorNative.measureSgemm(n: 2048, repeats: 3))
    }

    /// The report as text (see `Report.description`).
    public static func run(batch: Int = 64, repeats: Int) -> String {
        measure(batch: batch, repeats: repeats).description
    }
}
