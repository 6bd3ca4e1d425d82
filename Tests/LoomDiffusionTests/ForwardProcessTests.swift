import Testing
import LoomTensor
import LoomDiffusion

@Suite struct ForwardProcessTests {
    static let t = [10, 700]

    @Test func qSampleMatchesNumPy() {
        let d = GaussianDiffusion()
        let xt = d.qSample(x0: Fixture.x0, t: Self.t, noise: Fixture.noise)
        #expect(xt.shape == Fixture.shape)
        #expect(Fixture.maxError(xt.array, Reference.qSample) < 1e-6)
    }

    @Test func vTargetMatchesNumPy() {
        let d = GaussianDiffusion(target: .v)
        let v = d.trainingTarget(x0: Fixture.x0, noise: Fixture.noise, t: Self.t)
        #expect(Fixture.maxError(v.array, Reference.vTarget) < 1e-6)
        #expect(GaussianDiffusion(target: .epsilon).trainingTarget(x0: Fixture.x0, noise: Fixture.noise, t: Self.t).array == Fixture.noise.array)
        #expect(GaussianDiffusion(target: .x0).trainingTarget(x0: Fixture.x0, noise: Fixture.noise, t: Self.t).array == Fixture.x0.array)
    }

    @Test(arguments: PredictionTarget.allCases)
    func conversionsRoundTrip(target: PredictionTarget) {
        // A perfect network output for (x0, ε, t) must convert back to exactly x0 and ε.
        let d = GaussianDiffusion(schedule: .cosine(), target: target)
        for (t, tolerance) in [([10, 700], 1e-5), ([250, 950], 1e-4)] as [([Int], Double)] {
            let xt = d.qSample(x0: Fixture.x0, t: t, noise: Fixture.noise)
            let output = d.trainingTarget(x0: Fixture.x0, noise: Fixture.noise, t: t)
            let x0 = d.predictX0(from: output, xt: xt, t: t)
            let eps = d.predictEpsilon(from: output, xt: xt, t: t)
            #expect(Fixture.maxError(x0.array, Fixture.x0.array.map(Double.init)) < tolerance)
            #expect(Fixture.maxError(eps.array, Fixture.noise.array.map(Double.init)) < tolerance)
            let epsFromX0 = d.epsilon(fromX0: Fixture.x0, xt: xt, t: t)
            #expect(Fixture.maxError(epsFromX0.array, Fixture.noise.array.map(Double.init)) < tolerance)
        }
    }

    @Test func qSampleGradientsAreThePerSampleCoefficients() {
        let s = NoiseSchedule.linear()
        let x0 = Fixture.x0, noise = Fixture.noise
        x0.requiresGrad = true
        noise.requiresGrad = true
        GaussianDiffusion(schedule: s).qSample(x0: x0, t: Self.t, noise: noise).sum().backward()
        let per = x0.count / 2
        for i in 0..<x0.count {
            let t = Self.t[i / per]
            #expect(abs(Double(x0.grad!.data[i]) - s.sqrtAlphasCumprod[t]) < 1e-7)
            #expect(abs(Double(noise.grad!.data[i]) - s.sqrtOneMinusAlphasCumprod[t]) < 1e-7)
        }
    }

    @Test func combinationSecondOrder() {
        // f = Σ (c ⊙ x)·x: ∂f/∂x = 2c·x per sample, and ∂/∂x Σ ∂f/∂x = 2c.
        let x = Fixture.xt
        x.requiresGrad = true
        let c: [Float] = [0.5, -1.5]
        let g = grad(of: (perSampleLinearCombination([(x, c)]) * x).sum(), wrt: [x], createGraph: true)[0]
        let per = x.count / 2
        for i in 0..<x.count { #expect(g.data[i] == 2 * c[i / per] * x.data[i]) }
        g.sum().backward()
        for i in 0..<x.count { #expect(x.grad!.data[i] == 2 * c[i / per]) }
    }

    @Test func offsetNoiseAddsOneValuePerItemAndChannel() {
        let shape = [3, 4, 5, 2]
        let d = GaussianDiffusion(offsetNoise: 0.5)
        var stream = RandomStream(seed: 11, purpose: .noise)
        var copy = stream
        let noise = d.trainingNoise(shape: shape, stream: &stream)
        // Independent reconstruction in the documented draw order.
        let base = Tensor.normal(shape, stream: &copy)
        let offsets = Tensor.normal([3, 2], stream: &copy)
        #expect(stream == copy)
        for n in 0..<3 {
            for p in 0..<20 {
                for c in 0..<2 {
                    let i = (n * 20 + p) * 2 + c
                    #expect(noise.data[i] == base.data[i] + 0.5 * offsets.data[n * 2 + c])
                }
            }
        }
        var plain = RandomStream(seed: 11, purpose: .noise)
        #expect(GaussianDiffusion().trainingNoise(shape: shape, stream: &plain).array == base.array)
    }
}
