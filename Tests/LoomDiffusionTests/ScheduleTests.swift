import Testing
import LoomDiffusion

@Suite struct ScheduleTests {
    @Test func linearAlphasCumprodMatchNumPy() {
        let s = NoiseSchedule.linear()
        #expect(s.timesteps == 1000)
        #expect(Fixture.maxRelativeError(Reference.linearT.map { s.alphasCumprod[$0] }, Reference.linearAlphasCumprod) < 1e-12)
        // guided-diffusion scales both ends by 1000/T.
        let s100 = NoiseSchedule.linear(timesteps: 100)
        #expect(Fixture.maxRelativeError(Reference.linear100T.map { s100.alphasCumprod[$0] }, Reference.linear100AlphasCumprod) < 1e-12)
        #expect(abs(s100.betas[0] - 1e-3) < 1e-15 && abs(s100.betas[99] - 0.2) < 1e-15)
        // Unscaled (diffusers) keeps the ends as given.
        let raw = NoiseSchedule.linear(timesteps: 100, scaleToTimesteps: false)
        #expect(raw.betas[0] == 1e-4 && raw.betas[99] == 0.02)
    }

    @Test func cosineAlphasCumprodMatchNumPy() {
        let s = NoiseSchedule.cosine()
        #expect(Fixture.maxRelativeError(Reference.cosineT.map { s.alphasCumprod[$0] }, Reference.cosineAlphasCumprod) < 1e-10)
        #expect(Fixture.maxRelativeError(Reference.cosineT.map { s.betas[$0] }, Reference.cosineBetas) < 1e-10)
        #expect(s.betas[999] == 0.999)  // clipped
        let s50 = NoiseSchedule.cosine(timesteps: 50)
        #expect(Fixture.maxRelativeError(Reference.cosine50T.map { s50.alphasCumprod[$0] }, Reference.cosine50AlphasCumprod) < 1e-10)
    }

    @Test func posteriorTablesMatchGuidedDiffusion() {
        let s = NoiseSchedule.linear()
        let t = Reference.posteriorT
        #expect(Fixture.maxRelativeError(t.map { s.posteriorVariance[$0] }, Reference.posteriorVariance) < 1e-12)
        #expect(Fixture.maxRelativeError(t.map { s.posteriorLogVarianceClipped[$0] }, Reference.posteriorLogVarianceClipped) < 1e-12)
        #expect(Fixture.maxRelativeError(t.map { s.posteriorMeanCoef1[$0] }, Reference.posteriorMeanCoef1) < 1e-12)
        #expect(Fixture.maxRelativeError(t.map { s.posteriorMeanCoef2[$0] }, Reference.posteriorMeanCoef2) < 1e-12)
    }

    @Test func derivedTablesAreConsistent() {
        let s = NoiseSchedule.cosine(timesteps: 200)
        #expect(s.alphaBar(-1) == 1)
        #expect(s.alphasCumprodPrev[0] == 1)
        for t in [0, 57, 199] {
            let a = s.alphasCumprod[t]
            #expect(abs(s.sqrtAlphasCumprod[t] * s.sqrtAlphasCumprod[t] + s.sqrtOneMinusAlphasCumprod[t] * s.sqrtOneMinusAlphasCumprod[t] - 1) < 1e-12)
            #expect(abs(s.snr[t] - a / (1 - a)) <= 1e-12 * s.snr[t])
            #expect(abs(s.sqrtRecipm1AlphasCumprod[t] - (1 / a - 1).squareRoot()) <= 1e-12 * s.sqrtRecipm1AlphasCumprod[t])
        }
        #expect(zip(s.alphasCumprod, s.alphasCumprod.dropFirst()).allSatisfy { $0 > $1 })
    }

    @Test func trailingTimestepsMatchDiffusers() {
        let d = GaussianDiffusion()
        #expect(d.samplingTimesteps(steps: 7) == Reference.trailing7)
        #expect(d.samplingTimesteps(steps: 50) == Reference.trailing50)
        #expect(d.samplingTimesteps(steps: 1000) == Array((0..<1000).reversed()))
    }
}
