import Foundation
import LoomModels
import LoomNN
import LoomTensor
import Testing

/// Largest error of `analytic` against central differences of `f` over the elements of `t`,
/// relative to the largest numeric gradient (at least 1e-2), as LoomTensorTests' GradCheck
/// measures it: a gradient off by a factor fails whatever its size.
private func maxFiniteDifferenceError(_ t: Tensor, analytic: [Float], eps: Float, _ f: () -> Double) -> Float {
    var difference: Float = 0, scale: Float = 1e-2
    for i in 0..<t.count {
        let saved = t.data[i]
        t.data[i] = saved + eps
        let up = f()
        t.data[i] = saved - eps
        let down = f()
        t.data[i] = saved
        let numeric = Float((up - down) / Double(2 * eps))
        difference = max(difference, abs(numeric - analytic[i]))
        scale = max(scale, abs(numeric))
    }
    return difference / scale
}

private func softplus(_ x: Double) -> Double { log(1 + exp(x)) }

private func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }

/// A tiny critic on [B, 4, 4, 2] images: conv3×3(2→3) → LeakyReLU(0.2) → conv4×4(3→1) or
/// linear(48→1) → [B].
private struct TinyCritic {
    let w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
    let linearHead: Bool

    init(linearHead: Bool, stream: inout RandomStream) {
        self.linearHead = linearHead
        w1 = Tensor.uniform([3, 2, 3, 3], low: -0.5, high: 0.5, stream: &stream)
        b1 = Tensor.uniform([3], low: -0.2, high: 0.2, stream: &stream)
        w2 = Tensor.uniform(linearHead ? [1, 48] : [1, 3, 4, 4], low: -0.5, high: 0.5, stream: &stream)
        b2 = Tensor.uniform([1], low: -0.2, high: 0.2, stream: &stream)
        for t in parameters { t.requiresGrad = true }
    }

    var parameters: [Tensor] { [w1, b1, w2, b2] }

    func preActivation(_ x: Tensor) -> Tensor { conv2d(x, weight: w1, bias: b1, padding: 1) }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = preActivation(x).leakyRelu(0.2)
        let b = x.shape[0]
        return linearHead ? linear(h.reshaped([b, 48]), weight: w2, bias: b2).reshaped([b])
                          : conv2d(h, weight: w2, bias: b2).reshaped([b])
    }

    /// Smallest |pre-activation|: finite differences that move one first-layer weight by eps
    /// (inputs |x| ≤ 1) must not cross LeakyReLU's kink, where the penalty jumps.
    func margin(_ x: Tensor) -> Float { noGrad { preActivation(x).array.map { Swift.abs($0) }.min()! } }
}

@Suite struct GANLossTests {
    @Test func lossesMatchClosedForms() {
        let r: [Double] = [2.0, -1.0, 0.5], f: [Double] = [-0.3, 1.5]
        let real = Tensor(r.map(Float.init), shape: [3]), fake = Tensor(f.map(Float.init), shape: [2])
        let expected: [(GANLoss, Double, Double)] = [
            (.bce, mean(r.map { softplus(-$0) }) + mean(f.map(softplus)), mean(f.map { softplus(-$0) })),
            (.wgan, mean(f) - mean(r), -mean(f)),
            (.wganGP, mean(f) - mean(r), -mean(f)),
            (.hinge, mean(r.map { max(0, 1 - $0) }) + mean(f.map { max(0, 1 + $0) }), -mean(f)),
        ]
        for (loss, d, g) in expected {
            #expect(abs(Double(loss.discriminatorLoss(real: real, fake: fake).item) - d) < 1e-6, "\(loss) D")
            #expect(abs(Double(loss.generatorLoss(fake: fake).item) - g) < 1e-6, "\(loss) G")
        }
        #expect(GANLoss.allCases.filter(\.usesGradientPenalty) == [.wganGP])
        #expect(GANLoss(rawValue: "wgan_gp") == .wganGP)
    }

    @Test func lossGradientsReachTheLogits() {
        // The non-saturating G loss: ∂/∂fake softplus(−fake)/B = −σ(−fake)/B.
        let fake = Tensor([-0.3, 1.5], shape: [2], requiresGrad: true)
        GANLoss.bce.generatorLoss(fake: fake).backward()
        for (x, g) in zip([-0.3, 1.5], fake.grad!.array) {
            #expect(abs(Double(g) + 1 / (1 + exp(x)) / 2) < 1e-6)
        }
    }

    @Test func penaltiesOfALinearCriticAreClosedForms() {
        // D(x) = ⟨w, x⟩ + b: every input gradient is w, so GP = (‖w‖ − 1)² with gradient
        // 2(‖w‖ − 1)·w/‖w‖, and R1 = ‖w‖² with gradient 2w; b gets none.
        var s = RandomStream(key: 12)
        let w = Tensor.uniform([1, 18], low: -0.5, high: 0.5, stream: &s), b = Tensor([0.3], shape: [1], requiresGrad: true)
        w.requiresGrad = true
        let critic = { (x: Tensor) in linear(x.reshaped([x.shape[0], 18]), weight: w, bias: b).reshaped([x.shape[0]]) }
        let real = Tensor.uniform([4, 3, 3, 2], low: -1, high: 1, stream: &s)
        let fake = Tensor.uniform([4, 3, 3, 2], low: -1, high: 1, stream: &s)
        let norm = w.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()

        let gp = gradientPenalty(critic: critic, real: real, fake: fake, epsilon: Tensor.uniform([4], stream: &s))
        #expect(abs(Double(gp.item) - (norm - 1) * (norm - 1)) < 1e-6)
        gp.backward()
        for (g, wi) in zip(w.grad!.array, w.array) {
            #expect(abs(Double(g) - 2 * (norm - 1) * Double(wi) / norm) < 1e-6)
        }
        #expect(b.grad.map { $0.array.allSatisfy { $0 == 0 } } ?? true)

        w.grad = nil
        let r1 = r1Penalty(critic: critic, real: real)
        #expect(abs(Double(r1.item) - norm * norm) < 1e-6)
        r1.backward()
        for (g, wi) in zip(w.grad!.array, w.array) { #expect(abs(g - 2 * wi) < 1e-6) }
    }

    @Test func penaltyGradientsMatchFiniteDifferences() {
        let eps: Float = 2e-3
        for linearHead in [false, true] {
            // The first data whose pre-activations keep clear of LeakyReLU's kink.
            var found: (TinyCritic, Tensor, Tensor, Tensor, Tensor)?
            for seed in UInt64(1)...50 {
                var s = RandomStream(key: seed)
                let critic = TinyCritic(linearHead: linearHead, stream: &s)
                let real = Tensor.uniform([3, 4, 4, 2], low: -1, high: 1, stream: &s)
                let fake = Tensor.uniform([3, 4, 4, 2], low: -1, high: 1, stream: &s)
                let e = Tensor.uniform([3], stream: &s)
                let mixed = noGrad { e.reshaped([3, 1, 1, 1]) * real + (1 - e.reshaped([3, 1, 1, 1])) * fake }
                if min(critic.margin(real), critic.margin(mixed)) > 4 * eps { found = (critic, real, fake, e, mixed); break }
            }
            guard let (critic, real, fake, e, _) = found else { Issue.record("no data clear of the kink"); return }
            let penalties: [(String, () -> Tensor)] = [
                ("GP", { gradientPenalty(critic: critic.callAsFunction, real: real, fake: fake, epsilon: e) }),
                ("R1", { r1Penalty(critic: critic.callAsFunction, real: real) }),
            ]
            for (name, penalty) in penalties {
                for p in critic.parameters { p.grad = nil }
                penalty().backward()
                // ∇ₓD does not depend on the biases away from the kink: they get no gradient.
                for p in critic.parameters {
                    let analytic = p.grad?.array ?? [Float](repeating: 0, count: p.count)
                    let error = maxFiniteDifferenceError(p, analytic: analytic, eps: eps) { Double(penalty().item) }
                    #expect(error < 2e-3, "\(name) linearHead=\(linearHead) \(p.shape): \(error)")  // measured ≤ 1.1e-4
                }
            }
        }
    }

    @Test func r1ThroughASpectrallyNormalisedCriticMatchesFiniteDifferences() {
        var s = RandomStream(key: 13)
        let conv = SNConv2d(2, 3, kernel: 3, padding: 1, stream: &s)
        let head = SNLinear(48, 1, stream: &s)
        let real = Tensor.uniform([2, 4, 4, 2], low: -1, high: 1, stream: &s)
        // Train a few forwards, then fix u and v (evaluation) so finite differences see one function.
        for _ in 0..<3 { _ = noGrad { head(conv(real).reshaped([2, 48])) } }
        conv.eval()
        head.eval()
        let critic = { (x: Tensor) in head(conv(x).tanh().reshaped([x.shape[0], 48])).reshaped([x.shape[0]]) }
        r1Penalty(critic: critic, real: real).backward()
        for p in [conv.weightOrig, head.weightOrig] {
            let error = maxFiniteDifferenceError(p, analytic: p.grad!.array, eps: 1e-3) {
                Double(r1Penalty(critic: critic, real: real).item)
            }
            #expect(error < 2e-3, "\(p.shape): \(error)")  // measured 5e-5
        }
    }

    @Test func penaltiesRunThroughTheDCGANDiscriminator() {
        var c = DCGANConfig()
        c.imageSize = 28; c.channels = 1; c.dChannels = 4; c.classes = 3; c.spectralNorm = true; c.dNorm = .layer
        var s = RandomStream(seed: 6, purpose: .initialization)
        let d = DCGANDiscriminator(c, stream: &s)
        let labels = [0, 2]
        let real = Tensor.uniform([2, 28, 28, 1], low: -1, high: 1, stream: &s)
        let fake = Tensor.uniform([2, 28, 28, 1], low: -1, high: 1, stream: &s)
        let critic = { (x: Tensor) in d(x, labels: labels) }
        let loss = GANLoss.wganGP.discriminatorLoss(real: critic(real), fake: critic(fake))
            + 10 * gradientPenalty(critic: critic, real: real, fake: fake, epsilon: Tensor.uniform([2], stream: &s))
            + 5 * r1Penalty(critic: critic, real: real)
        loss.backward()
        for (name, p) in d.namedParameters() {
            #expect(p.grad.map { $0.array.allSatisfy(\.isFinite) } == true, "\(name)")
        }
        // The overload on an existing forward gives the same R1 (evaluation mode: same u, v).
        d.eval()
        let x = real.detached()
        x.requiresGrad = true
        let a = r1Penalty(logits: critic(x), inputs: x).item, b = r1Penalty(critic: critic, real: real).item
        #expect(a == b)
    }
}
