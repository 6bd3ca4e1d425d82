import Testing
import LoomTensor
import LoomDiffusion

@Suite struct LossTests {
    static let t = [10, 700]

    @Test func minSNRWeightsMatchNumPy() {
        let t = Reference.minSNRT
        func weights(_ target: PredictionTarget) -> [Double] {
            GaussianDiffusion(target: target, weighting: .minSNR(gamma: 5)).lossWeights(t: t).map(Double.init)
        }
        #expect(Fixture.maxRelativeError(weights(.epsilon), Reference.minSNREpsilon) < 1e-6)
        #expect(Fixture.maxRelativeError(weights(.v), Reference.minSNRV) < 1e-6)
        #expect(Fixture.maxRelativeError(weights(.x0), Reference.minSNRX0) < 1e-6)
        #expect(GaussianDiffusion().lossWeights(t: t) == [1, 1, 1, 1, 1])
    }

    @Test func lossValuesMatchNumPy() {
        func loss(_ target: PredictionTarget, _ weighting: LossWeighting) -> Double {
            Double(GaussianDiffusion(target: target, weighting: weighting)
                .trainingLoss(model: Fixture.toyModel, x0: Fixture.x0, labels: nil, t: Self.t, noise: Fixture.noise).item)
        }
        #expect(abs(loss(.epsilon, .uniform) / Reference.lossEpsilonUniform - 1) < 1e-6)
        #expect(abs(loss(.epsilon, .minSNR(gamma: 5)) / Reference.lossEpsilonMinSNR - 1) < 1e-6)
        #expect(abs(loss(.v, .minSNR(gamma: 5)) / Reference.lossVMinSNR - 1) < 1e-5)
    }

    @Test func lossGradientReachesModelParameters() {
        // model(x, t) = a·x + 0.01 t with a learnable scalar a; dL/da in closed form:
        // mean_n w_n mean_j 2 (a x_j + 0.01 t_n − target_j) x_j.
        let d = GaussianDiffusion(target: .v, weighting: .minSNR(gamma: 5))
        let a = Tensor([0.7], shape: [1], requiresGrad: true)
        let model: Denoiser = { x, t, _ in
            x * a + Tensor(t.map { 0.01 * Float($0) }, shape: [t.count, 1, 1, 1])
        }
        let loss = d.trainingLoss(model: model, x0: Fixture.x0, labels: nil, t: Self.t, noise: Fixture.noise)
        loss.backward()
        let xt = d.qSample(x0: Fixture.x0, t: Self.t, noise: Fixture.noise).array
        let target = d.trainingTarget(x0: Fixture.x0, noise: Fixture.noise, t: Self.t).array
        let w = d.lossWeights(t: Self.t)
        let per = xt.count / 2
        var expected = 0.0
        for i in 0..<xt.count {
            let n = i / per
            let r = 0.7 * Double(xt[i]) + 0.01 * Double(Self.t[n]) - Double(target[i])
            expected += Double(w[n]) * 2 * r * Double(xt[i]) / Double(per * 2)
        }
        #expect(abs(Double(a.grad!.item) - expected) < 1e-5 * max(1, abs(expected)))
    }

    @Test func weightedMSEFirstAndSecondOrder() {
        let p = Fixture.xt, q = Fixture.x0
        p.requiresGrad = true
        let w: [Float] = [0.25, 2]
        let per = p.count / 2, scale = 1 / Float(p.count)
        // Fused (tape off) backward: 2 w_n (p − q) / (per · N).
        p.grad = nil
        perSampleWeightedMSE(p, q, weights: w).backward()
        for i in 0..<p.count {
            let e = 2 * w[i / per] * (p.data[i] - q.data[i]) * scale
            #expect(abs(p.grad!.data[i] - e) < 1e-7)
        }
        // Composite (tape on) backward gives the same, and its derivative is 2 w_n / (per · N).
        p.grad = nil
        let g = grad(of: perSampleWeightedMSE(p, q, weights: w), wrt: [p], createGraph: true)[0]
        for i in 0..<p.count {
            let e = 2 * w[i / per] * (p.data[i] - q.data[i]) * scale
            #expect(abs(g.data[i] - e) < 1e-7)
        }
        g.sum().backward()
        for i in 0..<p.count { #expect(abs(p.grad!.data[i] - 2 * w[i / per] * scale) < 1e-7) }
    }

    @Test func streamLossFollowsTheDocumentedDrawOrder() {
        let d = GaussianDiffusion(offsetNoise: 0.1)
        var stream = RandomStream(seed: 3, purpose: .noise)
        var copy = stream
        let loss = d.trainingLoss(model: Fixture.toyModel, x0: Fixture.x0, labels: nil, stream: &stream)
        // The documented order, replayed without GaussianDiffusion: N timesteps, then the
        // standard normal noise of x0's shape, then N×C offsets (one per item and channel).
        let (n, c) = (Fixture.shape[0], Fixture.shape[3]), per = Fixture.x0.count / n
        let t = (0..<n).map { _ in copy.nextInt(below: 1000) }
        let eps = Tensor.normal(Fixture.shape, stream: &copy).array.map(Double.init)
        let offsets = Tensor.normal([n, c], stream: &copy).array.map(Double.init)
        let noise = eps.indices.map { i in eps[i] + 0.1 * offsets[(i / per) * c + i % c] }
        // ᾱ_t of the linear schedule written out: β = linspace(1e-4, 0.02, 1000), ᾱ_t = Π_{s≤t}(1 − β_s).
        var alphaBar: [Double] = [], product = 1.0
        for s in 0..<1000 { product *= 1 - (1e-4 + Double(s) * (0.02 - 1e-4) / 999); alphaBar.append(product) }
        // Uniform ε-prediction MSE of the toy network 0.1·x_t + 0.01·t, x_t = √ᾱ·x0 + √(1−ᾱ)·noise.
        let x0 = Fixture.x0.array.map(Double.init)
        var sum = 0.0
        for i in x0.indices {
            let ab = alphaBar[t[i / per]]
            let xt = ab.squareRoot() * x0[i] + (1 - ab).squareRoot() * noise[i]
            let out = 0.1 * xt + 0.01 * Double(t[i / per])
            sum += (out - noise[i]) * (out - noise[i])
        }
        let expected = sum / Double(x0.count)
        #expect(abs(Double(loss.item) / expected - 1) < 1e-5, "loss \(loss.item), replayed draws give \(expected)")
        #expect(stream == copy)
        // Timesteps cover the whole range uniformly enough.
        var s = RandomStream(seed: 5, purpose: .noise)
        let many = (0..<4000).map { _ in s.nextInt(below: 1000) }
        #expect(many.min()! < 10 && many.max()! > 989)
        #expect(abs(Double(many.reduce(0, +)) / 4000 - 499.5) < 15)
    }

    @Test func labelDropoutRate() {
        var s = RandomStream(seed: 9, purpose: .dropout)
        let labels = (0..<20_000).map { $0 % 10 }
        #expect(labelDropout(labels: labels, p: 0, nullClass: 10, stream: &s) == labels)
        #expect(labelDropout(labels: labels, p: 1, nullClass: 10, stream: &s).allSatisfy { $0 == 10 })
        var a = RandomStream(seed: 9, purpose: .dropout), b = a
        let dropped = labelDropout(labels: labels, p: 0.1, nullClass: 10, stream: &a)
        #expect(dropped == labelDropout(labels: labels, p: 0.1, nullClass: 10, stream: &b))
        let rate = Double(dropped.filter { $0 == 10 }.count) / Double(labels.count)
        #expect(abs(rate - 0.1) < 0.01)  // ~4.7 standard deviations
        #expect(zip(dropped, labels).allSatisfy { $0 == $1 || $0 == 10 })
    }
}
