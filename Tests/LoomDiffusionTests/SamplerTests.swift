import Testing
import LoomTensor
import LoomDiffusion

@Suite struct SamplerTests {
    let eps = GaussianDiffusion()
    let clip = SamplingOptions(clipDenoised: true)

    // MARK: single steps against NumPy

    @Test func ddpmStepMatchesNumPy() {
        let x = eps.ddpmStep(model: Fixture.toyModel, x: Fixture.xt, t: 500, noise: Fixture.z)
        #expect(Fixture.maxError(x.array, Reference.ddpmStep) < 1e-5)
        let c = eps.ddpmStep(model: Fixture.toyModel, x: Fixture.xt, t: 500, options: clip, noise: Fixture.z)
        #expect(Fixture.maxError(c.array, Reference.ddpmStepClipped) < 1e-5)
        let r = eps.ddpmStep(model: Fixture.toyModel, x: Fixture.xt, t: 500, tPrev: 450, noise: Fixture.z)
        #expect(Fixture.maxError(r.array, Reference.ddpmRespacedStep) < 1e-5)
    }

    @Test func ddimStepMatchesNumPy() {
        let m = Fixture.toyModel
        let e0 = eps.ddimStep(model: m, x: Fixture.xt, t: 600, tPrev: 580, eta: 0, noise: nil)
        #expect(Fixture.maxError(e0.array, Reference.ddimStepEta0) < 1e-5)
        let e1 = eps.ddimStep(model: m, x: Fixture.xt, t: 600, tPrev: 580, eta: 1, noise: Fixture.z)
        #expect(Fixture.maxError(e1.array, Reference.ddimStepEta1) < 1e-5)
        let v = GaussianDiffusion(target: .v).ddimStep(model: m, x: Fixture.xt, t: 600, tPrev: 580, eta: 0, noise: nil)
        #expect(Fixture.maxError(v.array, Reference.ddimStepVEta0) < 1e-5)
        let c = eps.ddimStep(model: m, x: Fixture.xt, t: 600, tPrev: 580, eta: 0, options: clip, noise: nil)
        #expect(Fixture.maxError(c.array, Reference.ddimStepClippedEta0) < 1e-5)
    }

    @Test func dpmSolverSecondOrderStepMatchesNumPy() {
        var history: DPMSolverHistory?
        let x1 = eps.dpmSolverStep(model: Fixture.toyModel, x: Fixture.xt, t: 600, tNext: 400, history: &history)
        #expect(Fixture.maxError(x1.array, Reference.dpmFirstOrder) < 1e-5)
        #expect(history?.t == 600)
        let x2 = eps.dpmSolverStep(model: Fixture.toyModel, x: x1, t: 400, tNext: 200, history: &history)
        #expect(Fixture.maxError(x2.array, Reference.dpmSecondOrder) < 1e-5)
        #expect(history?.t == 400)
    }

    // MARK: guidance

    /// A label-dependent model that records the batch sizes it was called with.
    final class LabelModel {
        var batches: [Int] = []
        func callAsFunction(_ x: Tensor, _ t: [Int], _ labels: [Int]?) -> Tensor {
            batches.append(x.shape[0])
            let per = x.count / x.shape[0]
            let out = Tensor(uninitialized: x.shape)
            for n in 0..<x.shape[0] {
                for j in 0..<per {
                    out.data[n * per + j] = 0.5 * x.data[n * per + j] + Float(labels![n]) - 0.001 * Float(t[n] * j)
                }
            }
            return out
        }
    }

    @Test func guidanceScaleOneIsTheConditionalModel() {
        let model = LabelModel()
        let labels = [3, 7]
        let options = SamplingOptions(labels: labels, guidanceScale: 1, nullClass: 10)
        let out = eps.guidedOutput(model: model.callAsFunction, x: Fixture.xt, t: [5, 5], options: options)
        #expect(out.array == model(Fixture.xt, [5, 5], labels).array)
        #expect(model.batches == [2, 2])  // one plain call, no doubled batch
    }

    @Test func guidanceCombinesConditionalAndNull() {
        let model = LabelModel()
        let options = SamplingOptions(labels: [3, 7], guidanceScale: 4, nullClass: 10)
        let out = eps.guidedOutput(model: model.callAsFunction, x: Fixture.xt, t: [5, 5], options: options)
        #expect(model.batches == [4])
        let cond = model(Fixture.xt, [5, 5], [3, 7]).array, uncond = model(Fixture.xt, [5, 5], [10, 10]).array
        let expected = zip(cond, uncond).map { Double($1) + 4 * Double($0 - $1) }
        #expect(Fixture.maxError(out.array, expected) < 1e-6)
    }

    // MARK: whole runs

    @Test(arguments: [Sampler.ddpm(), .ddpm(steps: 100), .ddim(steps: 50), .ddim(steps: 20, eta: 1), .dpmSolver2M(steps: 20)])
    func fullRunsAreFinite(sampler: Sampler) {
        let shape = [2, 4, 4, 3]
        var s = RandomStream(seed: 1, purpose: .sampling)
        let noise = Tensor.normal(shape, stream: &s)
        for options in [SamplingOptions(), clip] {
            let x = eps.sample(sampler, model: Fixture.toyModel, noise: noise, options: options, stream: &s)
            #expect(x.shape == shape)
            #expect(x.array.allSatisfy { $0.isFinite })
            if options.clipDenoised { #expect(x.array.allSatisfy { abs($0) <= 1 }) }
        }
    }

    @Test(arguments: [Sampler.ddpm(steps: 100), .ddim(steps: 30, eta: 1)])
    func fixedSeedIsBitwiseReproducible(sampler: Sampler) {
        let shape = [2, 32, 32, 8]  // large enough for the parallel loops to split
        let model: Denoiser = { x, t, _ in x * Float(0.05) + Float(t[0]) * 1e-4 }
        func run(seed: UInt64, threads: Int) -> [Float] {
            Parallel.withThreads(threads) {
                var s = RandomStream(seed: seed, purpose: .sampling)
                let noise = Tensor.normal(shape, stream: &s)
                return eps.sample(sampler, model: model, noise: noise, stream: &s).array
            }
        }
        let a = run(seed: 42, threads: 1)
        #expect(a == run(seed: 42, threads: 1))
        #expect(a == run(seed: 42, threads: 2))
        #expect(a != run(seed: 43, threads: 1))
    }

    /// For data that is the single point x0*, ε(x, t) = (x − √ᾱ x0*)/√(1−ᾱ) is the exact
    /// noise predictor; every sampler must then land on x0*.
    @Test(arguments: [Sampler.ddim(steps: 50), .dpmSolver2M(steps: 20), .ddpm(steps: 100)])
    func exactPredictorLandsOnTheDataPoint(sampler: Sampler) {
        let d = GaussianDiffusion(schedule: .cosine())
        let shape = [2, 3, 3, 2]
        let target = Fixture.tensor(shape) { Float(($0 * 5) % 9 - 4) / 5 }
        let model: Denoiser = { x, t, _ in
            let a = t.map { Float(d.schedule.sqrtAlphasCumprod[$0]) }
            let b = t.map { Float(1 / d.schedule.sqrtOneMinusAlphasCumprod[$0]) }
            let out = Tensor(uninitialized: x.shape)
            let per = x.count / x.shape[0]
            for i in 0..<x.count {
                let n = i / per
                out.data[i] = (x.data[i] - a[n] * target.data[i]) * b[n]
            }
            return out
        }
        var s = RandomStream(seed: 8, purpose: .sampling)
        let noise = Tensor.normal(shape, stream: &s)
        let x = d.sample(sampler, model: model, noise: noise, stream: &s)
        #expect(Fixture.maxError(x.array, target.array.map(Double.init)) < 1e-4)
    }
}
