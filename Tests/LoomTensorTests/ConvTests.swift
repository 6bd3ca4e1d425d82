import Foundation
import Testing
import LoomTensor

/// Direct-loop references (double precision) written from the PyTorch definitions; every
/// pass is derived from one enumeration of the terms x·W that make up each output.
enum NaiveConv {
    /// Calls `term(xIndex, wIndex, yIndex)` for every product x[xIndex]·W[wIndex] that
    /// conv2d adds into y[yIndex]: y[n, oh, ow, o] += x[n, oh·s − p + i, ow·s − p + j, c]·W[o, c, i, j].
    static func convTerms(x: [Int], w: [Int], y: [Int], stride s: Int, padding p: Int,
                          _ term: (Int, Int, Int) -> Void) {
        let (n, h, wd, ci) = (x[0], x[1], x[2], x[3]), (co, kh, kw) = (w[0], w[2], w[3])
        for b in 0..<n { for oh in 0..<y[1] { for ow in 0..<y[2] { for o in 0..<co {
            for i in 0..<kh { for j in 0..<kw {
                let ih = oh * s - p + i, iw = ow * s - p + j
                guard ih >= 0, ih < h, iw >= 0, iw < wd else { continue }
                for c in 0..<ci {
                    term(((b * h + ih) * wd + iw) * ci + c, ((o * ci + c) * kh + i) * kw + j,
                         ((b * y[1] + oh) * y[2] + ow) * co + o)
                }
            } }
        } } } }
    }

    /// The same for conv_transpose2d (scatter form):
    /// y[n, ih·s − p + i, iw·s − p + j, o] += x[n, ih, iw, c]·W[c, o, i, j].
    static func transposedTerms(x: [Int], w: [Int], y: [Int], stride s: Int, padding p: Int,
                                _ term: (Int, Int, Int) -> Void) {
        let (n, h, wd, ci) = (x[0], x[1], x[2], x[3]), (co, kh, kw) = (w[1], w[2], w[3])
        for b in 0..<n { for ih in 0..<h { for iw in 0..<wd { for c in 0..<ci {
            for i in 0..<kh { for j in 0..<kw {
                let oh = ih * s - p + i, ow = iw * s - p + j
                guard oh >= 0, oh < y[1], ow >= 0, ow < y[2] else { continue }
                for o in 0..<co {
                    term(((b * h + ih) * wd + iw) * ci + c, ((c * co + o) * kh + i) * kw + j,
                         ((b * y[1] + oh) * y[2] + ow) * co + o)
                }
            } }
        } } } }
    }

    /// Forward, dx, dW and db for output gradient `g`, from the term enumeration.
    static func passes(x: Tensor, w: Tensor, bias: Tensor?, g: Tensor, yShape: [Int],
                       terms: ((Int, Int, Int) -> Void) -> Void) -> (y: [Double], dx: [Double], dW: [Double], db: [Double]) {
        let c = yShape[3]
        var y = [Double](repeating: 0, count: yShape.reduce(1, *))
        var dx = [Double](repeating: 0, count: x.count), dW = [Double](repeating: 0, count: w.count)
        var db = [Double](repeating: 0, count: c)
        let xv = x.array.map(Double.init), wv = w.array.map(Double.init), gv = g.array.map(Double.init)
        terms { xi, wi, yi in
            y[yi] += xv[xi] * wv[wi]
            dx[xi] += gv[yi] * wv[wi]
            dW[wi] += xv[xi] * gv[yi]
        }
        for i in 0..<y.count {
            if let bias { y[i] += Double(bias.data[i % c]) }
            db[i % c] += gv[i]
        }
        return (y, dx, dW, db)
    }

    /// Largest |got − want| relative to max(1, max |want|).
    static func error(_ got: Tensor, _ want: [Double]) -> Double {
        precondition(got.count == want.count, "\(got.shape) vs \(want.count) values")
        let scale = max(1, want.map(abs).max() ?? 0)
        return zip(got.array, want).map { abs(Double($0) - $1) }.max()! / scale
    }
}

/// One test configuration: input shape, output channels, kernel, stride, padding (and
/// output padding for transposed convolutions), with or without bias.
struct ConvCase: CustomStringConvertible, Sendable {
    var x: [Int], cout: Int, k: Int, stride: Int, padding: Int, outputPadding = 0, bias = true
    var description: String { "x\(x) cout \(cout) k\(k) s\(stride) p\(padding) op\(outputPadding)\(bias ? "" : " nobias")" }
}

@Suite struct ConvTests {
    static let convCases: [ConvCase] = [
        ConvCase(x: [2, 5, 7, 3], cout: 4, k: 3, stride: 1, padding: 1),
        ConvCase(x: [2, 8, 6, 3], cout: 5, k: 3, stride: 2, padding: 1),
        ConvCase(x: [2, 6, 5, 4], cout: 3, k: 1, stride: 2, padding: 0, bias: false),  // right padding −1
        ConvCase(x: [2, 7, 6, 2], cout: 3, k: 4, stride: 2, padding: 1),
        ConvCase(x: [2, 6, 9, 3], cout: 2, k: 3, stride: 2, padding: 0),               // right padding −1
        ConvCase(x: [2, 5, 5, 3], cout: 8, k: 4, stride: 1, padding: 0),
        ConvCase(x: [2, 4, 6, 16], cout: 32, k: 3, stride: 1, padding: 1),             // blocked weights
        ConvCase(x: [2, 8, 8, 64], cout: 48, k: 1, stride: 1, padding: 0, bias: false),
        ConvCase(x: [69, 4, 3, 5], cout: 6, k: 3, stride: 1, padding: 1),              // 3 weight-gradient chunks
        ConvCase(x: [3, 64, 64, 32], cout: 4, k: 4, stride: 2, padding: 1),            // DCGAN-shaped strided 4×4
        ConvCase(x: [40, 3, 5, 6], cout: 7, k: 1, stride: 1, padding: 0),              // 1×1 as GEMM, 2 chunks
        ConvCase(x: [18, 5, 4, 35], cout: 1, k: 3, stride: 1, padding: 1),             // one output channel
        ConvCase(x: [2, 7, 20, 16], cout: 1, k: 4, stride: 2, padding: 1, bias: false),
        ConvCase(x: [2, 5, 12, 32], cout: 1, k: 3, stride: 1, padding: 1),
        ConvCase(x: [2, 6, 5, 3], cout: 1, k: 3, stride: 2, padding: 0),               // right padding −1
        ConvCase(x: [2, 9, 7, 16], cout: 64, k: 3, stride: 1, padding: 1),             // Winograd, all three passes
        ConvCase(x: [35, 6, 5, 32], cout: 16, k: 3, stride: 1, padding: 1, bias: false),  // Winograd fwd/bwd-data, 2 chunks
        ConvCase(x: [3, 1, 2, 16], cout: 64, k: 3, stride: 1, padding: 1),             // Winograd-eligible, tiny image
        ConvCase(x: [2, 9, 8, 3], cout: 32, k: 4, stride: 2, padding: 1),              // space-to-depth backward-data (RGB input)
        ConvCase(x: [2, 7, 6, 3], cout: 16, k: 4, stride: 2, padding: 1),              // space-to-depth, odd height
        ConvCase(x: [2, 8, 8, 2], cout: 16, k: 2, stride: 2, padding: 0, bias: false),  // space-to-depth, no padding
        ConvCase(x: [2, 9, 9, 3], cout: 16, k: 4, stride: 2, padding: 0),              // few-channel loop (right padding −1)
        ConvCase(x: [3, 7, 5, 1], cout: 20, k: 3, stride: 1, padding: 1),              // few-channel, 4 channels past the vectors
        ConvCase(x: [37, 4, 4, 16], cout: 24, k: 4, stride: 1, padding: 0),            // full window: GEMM, 2 weight chunks
        ConvCase(x: [3, 4, 4, 5], cout: 6, k: 4, stride: 2, padding: 0, bias: false),  // full window, stride 2
        ConvCase(x: [5, 4, 4, 32], cout: 1, k: 4, stride: 1, padding: 0),              // DCGAN D's last layer
        ConvCase(x: [3, 8, 8, 64], cout: 32, k: 4, stride: 2, padding: 1),             // weights as forward, with bias
        ConvCase(x: [2, 6, 6, 128], cout: 16, k: 3, stride: 2, padding: 1, bias: false),  // weights as forward, 2 shares
        ConvCase(x: [2, 7, 7, 64], cout: 16, k: 2, stride: 2, padding: 0),             // small strided output, right padding −1: jit kernel
    ]

    static let transposedCases: [ConvCase] = [
        ConvCase(x: [2, 4, 5, 3], cout: 2, k: 4, stride: 2, padding: 1),
        ConvCase(x: [2, 3, 3, 4], cout: 3, k: 3, stride: 2, padding: 1, outputPadding: 1),
        ConvCase(x: [2, 5, 4, 3], cout: 4, k: 3, stride: 1, padding: 1, bias: false),
        ConvCase(x: [2, 3, 4, 2], cout: 3, k: 1, stride: 2, padding: 0, outputPadding: 1),  // right padding −1
        ConvCase(x: [2, 1, 1, 8], cout: 4, k: 4, stride: 1, padding: 0),                    // DCGAN's z → 4×4
        ConvCase(x: [35, 1, 1, 20], cout: 12, k: 4, stride: 1, padding: 0, bias: false),    // full window, 2 weight chunks
        ConvCase(x: [3, 1, 1, 7], cout: 5, k: 3, stride: 2, padding: 0),                    // full window 3×3
        ConvCase(x: [2, 4, 3, 16], cout: 32, k: 4, stride: 2, padding: 1),                  // blocked weights
        ConvCase(x: [2, 3, 5, 3], cout: 2, k: 3, stride: 2, padding: 0),
        ConvCase(x: [40, 2, 3, 4], cout: 3, k: 4, stride: 2, padding: 1),                   // 2 weight-gradient chunks
        ConvCase(x: [3, 3, 4, 1], cout: 20, k: 3, stride: 2, padding: 1, outputPadding: 1),  // one input channel
        ConvCase(x: [2, 5, 6, 64], cout: 16, k: 3, stride: 1, padding: 1),                   // Winograd underneath
        ConvCase(x: [5, 8, 8, 128], cout: 4, k: 4, stride: 2, padding: 1),                  // DCGAN's last G layer, small
        ConvCase(x: [2, 5, 4, 48], cout: 3, k: 4, stride: 2, padding: 1),                   // to RGB: space-to-depth forward
        ConvCase(x: [2, 3, 4, 17], cout: 2, k: 3, stride: 2, padding: 0, outputPadding: 1),  // few-channel, scalar tail
        ConvCase(x: [2, 4, 4, 16], cout: 64, k: 4, stride: 2, padding: 1),                  // weights as forward (DCGAN G)
    ]

    /// Random x, W, b and output gradient for `c`; W is `wShape`.
    static func operands(_ c: ConvCase, wShape: [Int], yShape: [Int]) -> (Tensor, Tensor, Tensor?, Tensor) {
        var s = RandomStream(key: 5)
        let x = Tensor.uniform(c.x, low: -1, high: 1, stream: &s)
        let w = Tensor.uniform(wShape, low: -1, high: 1, stream: &s)
        let b = c.bias ? Tensor.uniform([c.cout], low: -1, high: 1, stream: &s) : nil
        let g = Tensor.uniform(yShape, low: -1, high: 1, stream: &s)
        for t in [x, w] + (b.map { [$0] } ?? []) { t.requiresGrad = true }
        return (x, w, b, g)
    }

    /// Checks the forward values and the three gradients, with and without `createGraph`
    /// (the fused first-order path and the composite one).
    static func checkPasses(_ c: ConvCase, wShape: [Int], yShape: [Int], op: (Tensor, Tensor, Tensor?) -> Tensor,
                            terms: ((Int, Int, Int) -> Void) -> Void) {
        let (x, w, b, g) = operands(c, wShape: wShape, yShape: yShape)
        let want = NaiveConv.passes(x: x, w: w, bias: b, g: g, yShape: yShape, terms: terms)
        for createGraph in [false, true] {
            let y = op(x, w, b)
            #expect(y.shape == yShape, "\(c)")
            #expect(NaiveConv.error(y, want.y) < 1e-5, "forward \(c)")
            let grads = grad(of: y, wrt: [x, w] + (b.map { [$0] } ?? []), gradOutput: g, createGraph: createGraph)
            #expect(NaiveConv.error(grads[0], want.dx) < 1e-5, "backward-data \(c) createGraph \(createGraph)")
            #expect(NaiveConv.error(grads[1], want.dW) < 1e-5, "backward-weights \(c) createGraph \(createGraph)")
            if b != nil { #expect(NaiveConv.error(grads[2], want.db) < 1e-5, "bias \(c) createGraph \(createGraph)") }
        }
    }

    @Test(arguments: convCases) func conv2dPassesMatchDirectLoops(c: ConvCase) {
        let wShape = [c.cout, c.x[3], c.k, c.k]
        let yShape = [c.x[0], (c.x[1] + 2 * c.padding - c.k) / c.stride + 1,
                      (c.x[2] + 2 * c.padding - c.k) / c.stride + 1, c.cout]
        Self.checkPasses(c, wShape: wShape, yShape: yShape,
                         op: { conv2d($0, weight: $1, bias: $2, stride: c.stride, padding: c.padding) },
                         terms: { NaiveConv.convTerms(x: c.x, w: wShape, y: yShape, stride: c.stride, padding: c.padding, $0) })
    }

    @Test(arguments: transposedCases) func convTranspose2dPassesMatchDirectLoops(c: ConvCase) {
        let wShape = [c.x[3], c.cout, c.k, c.k]
        let yShape = [c.x[0], (c.x[1] - 1) * c.stride - 2 * c.padding + c.k + c.outputPadding,
                      (c.x[2] - 1) * c.stride - 2 * c.padding + c.k + c.outputPadding, c.cout]
        Self.checkPasses(c, wShape: wShape, yShape: yShape,
                         op: { convTranspose2d($0, weight: $1, bias: $2, stride: c.stride, padding: c.padding,
                                               outputPadding: c.outputPadding) },
                         terms: { NaiveConv.transposedTerms(x: c.x, w: wShape, y: yShape, stride: c.stride,
                                                            padding: c.padding, $0) })
    }

    @Test func conv2dFiniteDifferences() {
        let xs = GradCheck.inputs([[2, 5, 4, 3], [4, 3, 3, 3], [4]])
        #expect(GradCheck.maxError(xs) { conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1) } < 1e-2)
        #expect(GradCheck.maxError(xs) { conv2d($0[0], weight: $0[1], bias: $0[2]) } < 1e-2)
        let single = GradCheck.inputs([[2, 5, 4, 3], [1, 3, 3, 3], [1]])
        #expect(GradCheck.maxError(single) { conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1) } < 1e-2)
        #expect(GradCheck.maxSecondOrderError(single) {
            let y = conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1)
            return y * y
        } < 2e-2)
    }

    @Test func convTranspose2dFiniteDifferences() {
        let xs = GradCheck.inputs([[2, 3, 2, 3], [3, 4, 4, 4], [4]])
        #expect(GradCheck.maxError(xs) {
            convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
        } < 1e-2)
        #expect(GradCheck.maxError(xs) {
            convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 0, outputPadding: 1)
        } < 1e-2)
    }

    /// y² makes the first-order gradient depend on every input, so grad-of-grad runs through
    /// the backward of all three passes; each ordering puts another input first (the one
    /// GradCheck differentiates before the second order).
    func secondOrderErrors(_ shapes: [[Int]], _ op: @escaping (Tensor, Tensor, Tensor) -> Tensor) -> [([Int], Float)] {
        [[0, 1, 2], [1, 0, 2], [2, 0, 1]].map { order in
            let xs = GradCheck.inputs(order.map { shapes[$0] }, low: -0.5, high: 0.5)
            let error = GradCheck.maxSecondOrderError(xs) { t in
                var byRole = [Tensor](repeating: t[0], count: 3)
                for (i, role) in order.enumerated() { byRole[role] = t[i] }
                let y = op(byRole[0], byRole[1], byRole[2])
                return y * y
            }
            return (order, error)
        }
    }

    @Test func conv2dSecondOrder() {
        for (order, error) in secondOrderErrors([[2, 4, 5, 3], [4, 3, 3, 3], [4]], {
            conv2d($0, weight: $1, bias: $2, stride: 2, padding: 1)
        }) {
            #expect(error < 2e-2, "order \(order)")
        }
    }

    @Test func convTranspose2dSecondOrder() {
        for (order, error) in secondOrderErrors([[2, 3, 2, 3], [3, 2, 4, 4], [2]], {
            convTranspose2d($0, weight: $1, bias: $2, stride: 2, padding: 1)
        }) {
            #expect(error < 2e-2, "order \(order)")
        }
    }

    /// Gradient penalty shape (WGAN-GP): ‖∂D/∂x‖² differentiated w.r.t. the weights, against
    /// a closed form. For D(x) = ⟨conv(x, W), w⟩ the input gradient is D(w, W) = convᵀ(w, W),
    /// linear in W, so ∂/∂W ‖convᵀ(w, W)‖² = 2·T(convᵀ(w, W), w); T is checked above.
    @Test func gradientPenaltyMatchesClosedForm() {
        let xs = GradCheck.inputs([[2, 6, 6, 3], [5, 3, 3, 3]])
        let (x, w) = (xs[0], xs[1])
        var s = RandomStream(key: 11)
        let outW = Tensor.uniform([2, 3, 3, 5], low: -1, high: 1, stream: &s)
        let dx = grad(of: (conv2d(x, weight: w, bias: nil, stride: 2, padding: 1) * outW).sum(), wrt: [x], createGraph: true)[0]
        let penalty = (dx * dx).sum()
        let dW = grad(of: penalty, wrt: [w])[0]
        // Closed form through the public API: dx is the input gradient; 2·T(dx, outW) is the
        // weight gradient of ⟨conv(x', W), outW⟩ at x' = 2·dx.
        let x2 = (2 * dx.copy())
        x2.requiresGrad = true
        let want = grad(of: (conv2d(x2, weight: w, bias: nil, stride: 2, padding: 1) * outW).sum(), wrt: [w])[0]
        let scale = max(1, want.array.map(abs).max()!)
        #expect(zip(dW.array, want.array).map { abs($0 - $1) }.max()! / scale < 1e-5)
    }

    /// On a shape Winograd takes, `auto` really runs another algorithm than `direct` (results
    /// differ by rounding only), and each algorithm gives bitwise the same results at one and at
    /// two threads (the training's determinism rests on that).
    /// Whether this CPU has AVX-512F, from /proc/cpuinfo's flags (independently of oneDNN).
    static var cpuHasAVX512: Bool {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = info.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
        return flags.contains("avx512f")
    }

    /// Backward-weights of a strided layer with a small output runs as a forward convolution
    /// over fixed shares of input channels: the same bits at one and at two threads.
    @Test func smallOutputWeightGradientIgnoresThreadCount() {
        var s = RandomStream(key: 23)
        let x = Tensor.uniform([6, 8, 8, 192], low: -1, high: 1, stream: &s)
        let w = Tensor.uniform([48, 192, 4, 4], low: -0.1, high: 0.1, stream: &s)
        let g = Tensor.uniform([6, 4, 4, 48], low: -1, high: 1, stream: &s)
        w.requiresGrad = true
        let dW = [1, 2].map { threads in
            Parallel.withThreads(threads) {
                grad(of: conv2d(x, weight: w, bias: nil, stride: 2, padding: 1), wrt: [w], gradOutput: g)[0].array
            }
        }
        #expect(dW[0] == dW[1])
        #expect(dW[0].contains { $0 != 0 })
    }

    @Test func winogradDiffersFromDirectByRoundingAndIgnoresThreadCount() {
        var s = RandomStream(key: 21)
        let x = Tensor.uniform([8, 12, 12, 32], low: -1, high: 1, stream: &s)
        let w = Tensor.uniform([64, 32, 3, 3], low: -0.2, high: 0.2, stream: &s)
        let b = Tensor.uniform([64], low: -0.2, high: 0.2, stream: &s)
        let g = Tensor.uniform([8, 12, 12, 64], low: -1, high: 1, stream: &s)
        for t in [x, w, b] { t.requiresGrad = true }
        func passes(_ algorithm: ConvAlgorithm, threads: Int) -> [[Float]] {
            Parallel.withThreads(threads) {
                let savedAlgorithm = ConvAlgorithm.current
                ConvAlgorithm.current = algorithm
                defer { ConvAlgorithm.current = savedAlgorithm }
                let y = conv2d(x, weight: w, bias: b, padding: 1)
                return [y.array] + grad(of: y, wrt: [x, w, b], gradOutput: g).map(\.array)
            }
        }
        let direct = passes(.direct, threads: 1), auto = passes(.auto, threads: 1)
        for (name, (a, d)) in zip(["forward", "backward-data", "backward-weights", "bias"], zip(auto, direct)) {
            let scale = d.map(abs).max()!
            let worst = zip(a, d).map { abs($0 - $1) }.max()! / scale
            #expect(worst < 1e-5, "\(name): auto differs from direct by \(worst) relative")
            if Self.cpuHasAVX512 {
                if name != "bias" { #expect(worst > 0, "\(name): auto gave bitwise direct's result; Winograd did not run") }
            } else {
                // Without Winograd (oneDNN has it for AVX-512 only) `auto` is direct, bit for bit.
                #expect(worst == 0, "\(name): auto differs from direct on a CPU without Winograd")
            }
        }
        // oneDNN offers Winograd exactly when the CPU has AVX-512 (read from /proc/cpuinfo here).
        #expect(ConvAlgorithm.winogradAvailable == Self.cpuHasAVX512)
        // CI must exercise the Winograd path (the cluster's CPUs have AVX-512): a CI runner
        // without it fails here instead of passing with half of this test unrun.
        if ProcessInfo.processInfo.environment["CI"] != nil {
            #expect(Self.cpuHasAVX512, "CI runs on a CPU without AVX-512: the Winograd convolutions go untested")
        }
        for algorithm in ConvAlgorithm.allCases {
            let one = passes(algorithm, threads: 1), two = passes(algorithm, threads: 2)
            #expect(one == two, "\(algorithm): results change with the thread count")
        }
    }
}
