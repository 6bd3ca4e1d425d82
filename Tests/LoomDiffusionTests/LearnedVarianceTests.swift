import Foundation
import LoomDiffusion
import LoomTensor
import Testing

/// Learned variances against guided-diffusion's formulas transcribed to NumPy
/// (Fixtures/reference.py) and against closed forms written here.
@Suite struct LearnedVarianceTests {
    var learned: GaussianDiffusion {
        var d = GaussianDiffusion()
        d.learnSigma = true
        return d
    }

    /// The toy ε (0.1·x + 0.01·t) in the first C channels, then v = 0.5 − 0.25·x.
    static let learnedToyModel: Denoiser = { x, t, _ in
        let c = x.shape.last!, pixels = x.count / c, per = x.count / x.shape[0]
        let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [2 * c])
        for p in 0..<pixels {
            for k in 0..<c {
                let value = x.data[p * c + k]
                out.data[p * 2 * c + k] = 0.1 * value + 0.01 * Float(t[(p * c) / per])
                out.data[p * 2 * c + c + k] = 0.5 - 0.25 * value
            }
        }
        return out
    }

    @Test func normalKLMatchesTheClosedForm() {
        // KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) = log(σ2/σ1) + (σ1² + (μ1 − μ2)²)/(2σ2²) − ½
        let cases: [(Double, Double, Double, Double)] = [(0, 1, 0, 1), (0.5, 0.2, -0.3, 1.7), (2, 3, 1, 0.5), (-1, 0.01, -1, 0.02)]
        for (m1, s1, m2, s2) in cases {
            let want = Foundation.log(s2 / s1) + (s1 * s1 + (m1 - m2) * (m1 - m2)) / (2 * s2 * s2) - 0.5
            let got = normalKL(mean1: Tensor([Float(m1)], shape: [1]), logVariance1: Tensor([Float(2 * Foundation.log(s1))], shape: [1]),
                               mean2: Tensor([Float(m2)], shape: [1]), logVariance2: Tensor([Float(2 * Foundation.log(s2))], shape: [1]))
            #expect(abs(Double(got.item) - want) < 1e-5 * max(1, want), "\(m1) \(s1) \(m2) \(s2)")
        }
    }

    /// The bin probability computed directly: Φ at the bin's edges (with the same tanh
    /// approximation of Φ as guided-diffusion), the outer bins open.
    @Test func discretisedLogLikelihoodMatchesADirectComputation() {
        func phi(_ u: Double) -> Double { 0.5 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (u + 0.044715 * u * u * u))) }
        let xs: [Double] = [-1, -0.5, 0, 0.2509803921568627, 1], mean = 0.1, logScale = -1.0
        let got = discretizedGaussianLogLikelihood(Tensor(xs.map(Float.init), shape: [5]),
                                                   mean: Tensor(repeating: Float(mean), shape: [5]),
                                                   logScale: Tensor(repeating: Float(logScale), shape: [5])).array
        let scale = Foundation.exp(logScale), half = 1.0 / 255
        for (x, g) in zip(xs, got) {
            let upper = x > 0.999 ? 1 : phi((x - mean + half) / scale)
            let lower = x < -0.999 ? 0 : phi((x - mean - half) / scale)
            #expect(abs(Double(g) - Foundation.log(upper - lower)) < 1e-4, "x = \(x)")
        }
    }

    @Test func variationalBoundTermsMatchNumPy() {
        func terms(_ x0: Tensor, _ t: [Int]) -> [Float] {
            let xt = learned.qSample(x0: x0, t: t, noise: Fixture.noise)
            let (prediction, v) = learned.splitLearnedOutput(Self.learnedToyModel(xt, t, nil))
            return learned.variationalBoundTerms(x0: x0, xt: xt, t: t, prediction: prediction,
                                                 logVariance: learned.learnedLogVariance(v, t: t)).array
        }
        #expect(Fixture.maxError(terms(Fixture.x0, [500, 0]), Reference.vbTermsKLAndDecoder) < 1e-4)
        let edges = Fixture.tensor { Swift.min(1, Swift.max(-1, Float((($0 * 7) % 13) - 6) / 4)) }
        #expect(Fixture.maxError(terms(edges, [0, 0]), Reference.vbTermsDecoderEdges) < 1e-4)
        let loss = learned.trainingLoss(model: Self.learnedToyModel, x0: Fixture.x0, labels: nil, t: [10, 700], noise: Fixture.noise)
        #expect(abs(Double(loss.item) - Reference.lossLearnedSigmaHybrid) < 1e-4 * Reference.lossLearnedSigmaHybrid)
    }

    @Test func ddpmStepUsesTheLearnedVariance() {
        let x = learned.ddpmStep(model: Self.learnedToyModel, x: Fixture.xt, t: 500, noise: Fixture.z)
        #expect(Fixture.maxError(x.array, Reference.ddpmLearnedStep) < 1e-5)
        let r = learned.ddpmStep(model: Self.learnedToyModel, x: Fixture.xt, t: 500, tPrev: 450, noise: Fixture.z)
        #expect(Fixture.maxError(r.array, Reference.ddpmLearnedRespacedStep) < 1e-5)
    }

    /// The gradient reaches v through the log variance only (the mean is detached), and it
    /// agrees with central differences of the bound in v.
    @Test func boundGradientInVMatchesCentralDifferences() {
        let t = [300, 0]
        let x0 = Fixture.x0, xt = learned.qSample(x0: x0, t: t, noise: Fixture.noise)
        let prediction = Fixture.tensor { Float((($0 * 3) % 5) - 2) / 4 }
        let v = Fixture.tensor { Float((($0 * 5) % 9) - 4) / 5 }
        v.requiresGrad = true
        func bound(_ v: Tensor) -> Tensor {
            learned.variationalBoundTerms(x0: x0, xt: xt, t: t, prediction: prediction,
                                          logVariance: learned.learnedLogVariance(v, t: t)).sum()
        }
        bound(v).backward()
        let grad = v.grad!.array
        var worst = 0.0, largest = 0.0
        for i in 0..<v.count {
            let h: Float = 1e-2
            let up = v.copy(), down = v.copy()
            up.data[i] += h
            down.data[i] -= h
            let numeric = Double(noGrad { bound(up).item - bound(down).item }) / Double(2 * h)
            worst = max(worst, abs(numeric - Double(grad[i])))
            largest = max(largest, abs(numeric))
        }
        #expect(largest > 1e-3)
        #expect(worst / largest < 1e-2, "difference \(worst) against gradients up to \(largest)")
    }

    /// Guidance mixes only the prediction half; the variance half is the conditional one.
    @Test func guidanceLeavesTheVarianceHalfConditional() {
        let model: Denoiser = { x, t, labels in
            let out = Self.learnedToyModel(x, t, labels)
            let per = out.count / out.shape[0]
            for n in 0..<out.shape[0] { for j in 0..<per { out.data[n * per + j] += Float(labels![n]) } }
            return out
        }
        let options = SamplingOptions(labels: [1, 1], guidanceScale: 3, nullClass: 0)
        let out = learned.guidedOutput(model: model, x: Fixture.xt, t: [500, 500], options: options)
        let cond = model(Fixture.xt, [500, 500], [1, 1]), uncond = model(Fixture.xt, [500, 500], [0, 0])
        for i in 0..<out.count {
            let want = i % 6 < 3 ? uncond.data[i] + 3 * (cond.data[i] - uncond.data[i]) : cond.data[i]
            #expect(abs(out.data[i] - want) < 1e-5)
        }
    }
}
