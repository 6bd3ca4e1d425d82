import COpenBLAS
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
        /// Best and median wall-clock times of forward (bias fused), backward-data and
        /// backward-weights (with diff_bias).
        public var best: [Double], median: [Double]
        /// Best CPU times of the calling thread for the same passes: with one thread they
        /// exclude the time other processes hold the core, so they estimate the speed on an
        /// idle machine when the machine is shared.
        public var cpuBest: [Double]
        /// The implementation of each pass (oneDNN's name, dnnl_sgemm, loom:single_output, loom:few_channels or loom:full_window_sgemm).
        public var implementations: [String]
        /// Whether a training step runs backward-data (not for the stem: the images need no gradient).
        public var needsBackwardData: Bool

        /// Best wall-clock seconds this shape contributes to one W1 step.
        public var stepSeconds: Double { Double(count) * (best[0] + (needsBackwardData ? best[1] : 0) + best[2]) }
    }

    /// All W1 shapes timed, with the sgemm reference.
    public struct Report: CustomStringConvertible, Sendable {
        /// Batch size measured.
        public var batch: Int
        /// The algorithm `timings` ran with.
        public var algorithm: ConvAlgorithm
        /// One entry per distinct shape.
        public var timings: [Timing]
        /// The same shapes with direct convolution, timed alternately with `timings` (nil when
        /// `algorithm` is direct).
        public var direct: [Timing]?
        /// Per shape, the largest difference of the three passes' results from direct
        /// convolution's, relative to the largest magnitude of each result (0 when identical).
        public var differenceFromDirect: [Double]?
        /// cblas_sgemm 2048³ speed in GFLOP/s under the same thread settings (best wall-clock
        /// time of `TensorNative.measureSgemm` before and after the convolutions).
        public var sgemmGFLOPS: Double
        /// The same from the calling thread's CPU time (comparable with `Timing.cpuBest`).
        public var sgemmCPUGFLOPS: Double

        /// Which of the measured times a total uses.
        public enum Statistic: Sendable {
            /// Best wall-clock time of the repeats.
            case best
            /// Median wall-clock time.
            case median
            /// Best CPU time of the calling thread.
            case cpuBest
        }

        /// Seconds of convolution in one W1 step (forward + backward).
        public func stepSeconds(_ statistic: Statistic = .best) -> Double { Self.stepSeconds(timings, statistic) }

        static func stepSeconds(_ timings: [Timing], _ statistic: Statistic) -> Double {
            timings.reduce(0) { acc, t in
                let s = statistic == .best ? t.best : statistic == .median ? t.median : t.cpuBest
                return acc + Double(t.count) * (s[0] + (t.needsBackwardData ? s[1] : 0) + s[2])
            }
        }

        /// FLOPs of convolution in one W1 step.
        public var stepFlops: Double {
            timings.reduce(0) { $0 + Double($1.count) * $1.flops * ($1.needsBackwardData ? 3 : 2) }
        }

        /// The per-shape table and the step totals against sgemm.
        public var description: String {
            func ms(_ s: Double) -> String { String(format: "%7.3f", s * 1e3) }
            func gf(_ f: Double, _ s: Double) -> String { String(format: "%5.0f", f / s / 1e9) }
            let env = ProcessInfo.processInfo.environment
            var lines = [
                "W1 convolutions, batch \(batch), oneDNN \(TensorNative.dnnlVersion) \(TensorNative.dnnlISA), "
                    + "OMP_NUM_THREADS=\(env["OMP_NUM_THREADS"] ?? "unset"), algorithm \(algorithm.rawValue); "
                    + "table: best wall-clock time of the repeats; GF/s = direct-convolution FLOPs / time",
                "shape (Cin→Cout k s @res)  ×n |  fwd ms  GF/s | bwd-d ms GF/s | bwd-w ms GF/s | GF/s by CPU time |"
                    + (direct == nil ? "" : " step ms: direct → \(algorithm.rawValue) (diff) |")
                    + " implementations (fwd / bwd-d / bwd-w)",
            ]
            for (i, t) in timings.enumerated() {
                let s = t.shape
                let name = "\(s.cin)→\(s.cout) k\(s.kernel) s\(s.stride) @\(s.resolution)"
                var cols = [name.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %3d", t.count)]
                for p in 0..<3 { cols.append("\(ms(t.best[p])) \(gf(t.flops, t.best[p]))") }
                cols.append((0..<3).map { gf(t.flops, t.cpuBest[$0]) }.joined(separator: ""))
                if let direct, let diff = differenceFromDirect {
                    cols.append(String(format: "%7.2f → %7.2f (%.0e)", direct[i].stepSeconds * 1e3, t.stepSeconds * 1e3, diff[i]))
                }
                cols.append(t.implementations.joined(separator: " / "))
                lines.append(cols.joined(separator: " | "))
            }
            let flops = stepFlops
            lines.append(String(format: "one W1 step: %.1f GFLOP of convolution (stem without backward-data); "
                                + "cblas_sgemm 2048³ (OpenBLAS ", flops / 1e9)
                         + "\(TensorNative.blasCoreName), split over \(Parallel.threads) thread(s))")
            var runs = [(algorithm.rawValue, timings)]
            if let direct { runs.append(("direct", direct)) }
            for (label, list) in runs {
                for (name, statistic, sgemm) in [("best wall", Statistic.best, sgemmGFLOPS), ("median wall", .median, sgemmGFLOPS),
                                                 ("best thread CPU", .cpuBest, sgemmCPUGFLOPS)] {
                    let seconds = Self.stepSeconds(list, statistic)
                    lines.append("  \(label), \(name): " + String(format: "%.1f ms = %.1f GFLOP/s; sgemm %.1f GFLOP/s; convolutions at %.1f %% of sgemm",
                                        seconds * 1e3, flops / seconds / 1e9, sgemm, 100 * flops / seconds / 1e9 / sgemm))
                }
            }
            if let direct {
                let a = Self.stepSeconds(timings, .best), d = Self.stepSeconds(direct, .best)
                lines.append(String(format: "  \(algorithm.rawValue) takes %.1f %% of direct's time (%.2f× faster), measured alternately; "
                                    + "largest relative difference from direct %.1e", 100 * a / d, d / a, differenceFromDirect?.max() ?? 0))
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Times every W1 shape with `algorithm`, and with direct convolution alternately when
    /// `algorithm` is not direct: one warm-up call per pass (creates the primitives), then
    /// `repeats` timed calls.
    public static func measure(batch: Int = 64, repeats: Int, algorithm: ConvAlgorithm = .auto) -> Report {
        precondition(repeats >= 1, "ConvBenchmark: repeats must be at least 1")
        let saved = ConvAlgorithm.current
        defer { ConvAlgorithm.current = saved }
        let algorithms = algorithm == .direct ? [ConvAlgorithm.direct] : [algorithm, .direct]
        var stream = RandomStream(key: 2024)
        // sgemm before and after: on a shared machine the best of the two is the fairer peak.
        let sgemmBefore = (TensorNative.measureSgemm(n: 2048, repeats: 3), sgemmCPU(n: 2048, repeats: 3))
        var timings: [[Timing]] = algorithms.map { _ in [] }
        var differences: [Double] = []
        noGrad {
            for (shape, count) in w1Shapes() {
                let k = shape.kernel
                let x = Tensor.uniform([batch, shape.resolution, shape.resolution, shape.cin], low: -1, high: 1, stream: &stream)
                let w = Tensor.uniform([shape.cout, shape.cin, k, k], low: -0.1, high: 0.1, stream: &stream)
                let b = Tensor.uniform([shape.cout], low: -0.1, high: 0.1, stream: &stream)
                let geo = ConvGeometry.conv(input: x.shape, weight: w.shape, stride: shape.stride, padding: k / 2)
                let g = Tensor.uniform(geo.dstShape, low: -1, high: 1, stream: &stream)
                let passes: [() -> [Tensor]] = [
                    { [ConvPrimitive.forward(geo, src: x, weight: w, bias: b)] },
                    { [ConvPrimitive.backwardData(geo, diffDst: g, weight: w)] },
                    { let (dw, db) = ConvPrimitive.backwardWeights(geo, src: x, diffDst: g, withBias: true); return [dw, db!] },
                ]
                var best = algorithms.map { _ in [Double]() }, median = best, cpuBest = best
                var worst = 0.0
                for pass in passes {
                    var results: [[Tensor]] = []
                    for a in algorithms {
                        ConvAlgorithm.current = a
                        results.append(pass())  // warm-up; kept to compare the algorithms
                    }
                    for (r, d) in zip(results.first!, results.last!) {
                        let scale = max(d.array.map(abs).max() ?? 0, .leastNormalMagnitude)
                        worst = max(worst, Double(zip(r.array, d.array).map { abs($0 - $1) }.max() ?? 0) / Double(scale))
                    }
                    var wall = algorithms.map { _ in [Double]() }, cpu = wall
                    for _ in 0..<repeats {
                        for (i, a) in algorithms.enumerated() {  // alternate, so noise hits both alike
                            ConvAlgorithm.current = a
                            let t0 = DispatchTime.now().uptimeNanoseconds, c0 = threadCPUSeconds()
                            _ = pass()
                            cpu[i].append(threadCPUSeconds() - c0)
                            wall[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
                        }
                    }
                    for i in algorithms.indices {
                        wall[i].sort()
                        best[i].append(wall[i][0])
                        median[i].append(wall[i][wall[i].count / 2])
                        cpuBest[i].append(cpu[i].min()!)
                    }
                }
                differences.append(worst)
                var chunk = geo
                chunk.batch = min(batch, ConvPrimitive.weightChunkImages)
                let single = "loom:single_output"
                for (i, a) in algorithms.enumerated() {
                    ConvAlgorithm.current = a
                    var part = geo  // forward and backward-data run one share of the batch per thread
                    part.batch = geo.batch / max(1, min(Parallel.threads, geo.batch))
                    let full = FullWindowConv.handles(geo) ? "loom:full_window_sgemm" : nil
                    let impls = [geo.dstC == 1 ? single : full ?? ConvPrimitive.get(part, .forward, bias: true).main.implementation,
                                 SpaceToDepthConv.handles(geo) ? "loom:space_to_depth"
                                    : FewChannelConv.handles(geo) ? "loom:few_channels"
                                    : full ?? ConvPrimitive.get(part, .backwardData, bias: false).main.implementation,
                                 geo.dstC == 1 ? single : geo.isPointwise ? "dnnl_sgemm"
                                    : WeightsAsForwardConv.handles(geo) ? "loom:as_forward(\(WeightsAsForwardConv.implementation(geo)))"
                                    : full ?? ConvPrimitive.get(chunk, .backwardWeights, bias: true).main.implementation]
                    timings[i].append(Timing(shape: shape, count: count, flops: geo.flops, best: best[i], median: median[i],
                                             cpuBest: cpuBest[i], implementations: impls,
                                             needsBackwardData: shape.cin != 1))  // cin 1: the stem, on the images
                }
            }
        }
        return Report(batch: batch, algorithm: algorithm, timings: timings[0],
                      direct: algorithms.count > 1 ? timings[1] : nil,
                      differenceFromDirect: algorithms.count > 1 ? differences : nil,
                      sgemmGFLOPS: max(sgemmBefore.0, TensorNative.measureSgemm(n: 2048, repeats: 3)),
                      sgemmCPUGFLOPS: max(sgemmBefore.1, sgemmCPU(n: 2048, repeats: 3)))
    }

    /// CPU seconds the calling thread has used.
    static func threadCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// `TensorNative.measureSgemm` timed by the calling thread's CPU time.
    static func sgemmCPU(n: Int, repeats: Int) -> Double {
        let a = Tensor(repeating: 0.5, shape: [n, n]), b = Tensor(repeating: 0.25, shape: [n, n])
        let c = Tensor(uninitialized: [n, n])
        var best = Double.infinity
        for i in 0..<(repeats + 1) {
            let t0 = threadCPUSeconds()
            rowMajorSgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a.data, lda: n,
                          b: b.data, ldb: n, beta: 0, c: c.data, ldc: n)
            if i > 0 { best = min(best, threadCPUSeconds() - t0) }
        }
        return 2 * Double(n * n * n) / best / 1e9
    }

    /// The report as text (see `Report.description`).
    public static func run(batch: Int = 64, repeats: Int, algorithm: ConvAlgorithm = .auto) -> String {
        measure(batch: batch, repeats: repeats, algorithm: algorithm).description
    }
}
