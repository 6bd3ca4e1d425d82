import Foundation
import Testing
import LoomTensor
import LoomNN

/// Deterministic test data: 37 elements (two SIMD blocks and a tail).
enum OptData {
    static let count = 37
    static let initial: [Double] = (0..<count).map { (i: Int) -> Double in
        let a: Double = 0.3 * Double(i % 7), b: Double = 0.01 * Double(i)
        return a - 0.8 + b
    }
    /// The gradient at update `k`.
    static func gradient(_ k: Int, scale: Double = 1) -> [Double] {
        (0..<count).map { (i: Int) -> Double in
            let phase: Double = 0.7 * Double(i) + Double(k)
            return scale * sin(phase) * Double(1 + i % 3)
        }
    }

    static func tensor(_ xs: [Double]) -> Tensor { Tensor(xs.map(Float.init), shape: [xs.count]) }

    static func expectClose(_ t: Tensor, _ ref: [Double], tolerance: Double = 2e-6) {
        for (a, b) in zip(t.array, ref) {
            #expect(abs(Double(a) - b) <= tolerance * max(1, abs(b)), "got \(a), expected \(b)")
        }
    }
}

@Suite struct OptimizerTests {
    /// Textbook Adam in double: m̂ / (√v̂ + ε), with L2 or decoupled decay.
    func referenceAdam(lr: Double, beta1: Double, beta2: Double, eps: Double, weightDecay: Double,
                       decoupled: Bool, steps: Int) -> [Double] {
        var p = OptData.initial
        var m = [Double](repeating: 0, count: p.count), v = m
        for t in 1...steps {
            let g0 = OptData.gradient(t)
            for i in p.indices {
                if decoupled { p[i] *= 1 - lr * weightDecay }
                let g = decoupled ? g0[i] : g0[i] + weightDecay * p[i]
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g * g
                let mHat = m[i] / (1 - pow(beta1, Double(t))), vHat = v[i] / (1 - pow(beta2, Double(t)))
                p[i] -= lr * mHat / (vHat.squareRoot() + eps)
            }
        }
        return p
    }

    /// SGD with momentum, dampening, Nesterov and weight decay as PyTorch documents it, in double.
    func referenceSGD(lr: Double, momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool,
                      steps: Int) -> [Double] {
        var p = OptData.initial
        var b = [Double](repeating: 0, count: p.count)
        for t in 1...steps {
            let g0 = OptData.gradient(t)
            for i in p.indices {
                let g = g0[i] + weightDecay * p[i]
                b[i] = t == 1 ? g : momentum * b[i] + (1 - dampening) * g
                p[i] -= lr * (nesterov ? g + momentum * b[i] : b[i])
            }
        }
        return p
    }

    func run(_ makeOptimizer: ([(String, Tensor)]) -> Optimizer, steps: Int) -> Tensor {
        let p = OptData.tensor(OptData.initial)
        p.requiresGrad = true
        let opt = makeOptimizer([("w", p)])
        for t in 1...steps {
            p.grad = OptData.tensor(OptData.gradient(t))
            opt.step()
        }
        return p
    }

    @Test func adamMatchesHandComputedUpdates() {
        for (betas, wd) in [((0.9, 0.999), 0.0), ((0.5, 0.999), 0.1)] {
            let p = run({ Adam($0, lr: 0.05, betas: betas, eps: 1e-8, weightDecay: wd) }, steps: 3)
            OptData.expectClose(p, referenceAdam(lr: 0.05, beta1: betas.0, beta2: betas.1, eps: 1e-8,
                                                 weightDecay: wd, decoupled: false, steps: 3))
        }
    }

    @Test func adamWMatchesHandComputedUpdates() {
        let p = run({ AdamW($0, lr: 0.05, betas: (0.8, 0.99), eps: 1e-3, weightDecay: 0.3) }, steps: 3)
        OptData.expectClose(p, referenceAdam(lr: 0.05, beta1: 0.8, beta2: 0.99, eps: 1e-3,
                                             weightDecay: 0.3, decoupled: true, steps: 3))
    }

    @Test func sgdMatchesHandComputedUpdates() {
        let p1 = run({ SGD($0, lr: 0.1, momentum: 0.9, dampening: 0.2, weightDecay: 0.05) }, steps: 3)
        OptData.expectClose(p1, referenceSGD(lr: 0.1, momentum: 0.9, dampening: 0.2, weightDecay: 0.05,
                                             nesterov: false, steps: 3))
        let p2 = run({ SGD($0, lr: 0.1, momentum: 0.8, nesterov: true) }, steps: 3)
        OptData.expectClose(p2, referenceSGD(lr: 0.1, momentum: 0.8, dampening: 0, weightDecay: 0,
                                             nesterov: true, steps: 3))
        let p3 = run({ SGD($0, lr: 0.1) }, steps: 3)
        OptData.expectClose(p3, referenceSGD(lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0,
                                             nesterov: false, steps: 3))
    }

    @Test func groupsHaveTheirOwnRatesAndParametersWithoutGradientsAreSkipped() {
        let a = Tensor([1, 2], shape: [2], requiresGrad: true), b = Tensor([3], shape: [1], requiresGrad: true)
        let c = Tensor([5], shape: [1], requiresGrad: true)
        let opt = Adam(groups: [ParameterGroup([("a", a)], lr: 0.1), ParameterGroup([("b", b), ("c", c)], lr: 0.01)])
        a.grad = Tensor([1, -1], shape: [2])
        b.grad = Tensor([2], shape: [1])
        opt.step()
        // Adam's first step moves each element by lr·sign(g) (up to ε).
        OptData.expectClose(a, [0.9, 2.1], tolerance: 1e-6)
        OptData.expectClose(b, [2.99], tolerance: 1e-6)
        #expect(c.array == [5])
        #expect(opt.stepCount(of: "c") == 0 && opt.stepCount(of: "a") == 1)
        #expect(!opt.stateTensors().contains { $0.0.hasPrefix("state.c.") })
        opt.groups[1].lr = 0.5
        opt.setLearningRate(0.2)
        #expect(opt.groups.map(\.lr) == [0.2, 0.2])
        opt.zeroGrad()
        #expect(a.grad == nil && b.grad == nil)
    }

    @Test func clipGradNormMatchesClosedForm() {
        let a = Tensor.zeros([2], requiresGrad: true), b = Tensor.zeros([1], requiresGrad: true)
        let c = Tensor.zeros([3], requiresGrad: true)  // no gradient: ignored
        a.grad = Tensor([3, 4], shape: [2])
        b.grad = Tensor([12], shape: [1])
        #expect(clipGradNorm([a, b, c], maxNorm: 20) == 13)
        #expect(a.grad!.array == [3, 4] && b.grad!.array == [12])
        #expect(clipGradNorm([a, b, c], maxNorm: 6.5) == 13)
        let coef = 6.5 / (13 + 1e-6)
        OptData.expectClose(a.grad!, [3 * coef, 4 * coef], tolerance: 1e-7)
        OptData.expectClose(b.grad!, [12 * coef], tolerance: 1e-7)
        #expect(c.grad == nil)

        // A large gradient: the blocked double accumulation against a naive double sum.
        let big = Tensor.zeros([100_003], requiresGrad: true)
        var s = RandomStream(key: 9)
        big.grad = Tensor.uniform([100_003], low: -1, high: 1, stream: &s)
        let naive = big.grad!.array.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(globalGradNorm([big]) - naive) < 1e-9 * naive)
    }

    /// Runs `steps` updates, optionally stopping after `stopAfter` to rebuild parameters and
    /// optimizer from saved state.
    func trajectory(_ make: ([(String, Tensor)]) -> Optimizer, steps: Int, stopAfter: Int?) throws -> [[Float]] {
        var s = RandomStream(key: 11)
        var params = [("conv.weight", Tensor.uniform([5, 3, 3, 3], low: -1, high: 1, stream: &s)),
                      ("conv.bias", Tensor.uniform([5], low: -1, high: 1, stream: &s))]
        var opt = make(params)
        for t in 0..<steps {
            if t == stopAfter {
                let saved = opt.stateTensors()
                params = params.map { ($0.0, $0.1.copy()) }
                opt = make(params)
                try opt.loadState(saved)
            }
            for (k, (_, p)) in params.enumerated() {
                var gs = RandomStream(key: UInt64(100 * t + k))
                p.grad = Tensor.uniform(p.shape, low: -1, high: 1, stream: &gs)
            }
            opt.step()
        }
        return params.map { $0.1.array }
    }

    @Test func saveRestoreContinueIsBitwiseIdentical() throws {
        let makers: [([(String, Tensor)]) -> Optimizer] = [
            { Adam($0, lr: 0.01, weightDecay: 0.01) },
            { AdamW($0, lr: 0.01, betas: (0.5, 0.999)) },
            { SGD($0, lr: 0.05, momentum: 0.9, dampening: 0.1, nesterov: false) },
        ]
        for make in makers {
            let straight = try trajectory(make, steps: 5, stopAfter: nil)
            let resumed = try trajectory(make, steps: 5, stopAfter: 2)
            #expect(straight == resumed)
        }
    }

    @Test func stateNamesAndLoadErrors() throws {
        let w = Tensor.zeros([2, 2], requiresGrad: true)
        let opt = Adam([("w", w)])
        w.grad = Tensor.ones([2, 2])
        opt.step()
        opt.step()
        let state = opt.stateTensors()
        #expect(state.map(\.0) == ["state.w.step", "state.w.exp_avg", "state.w.exp_avg_sq"])
        #expect(state[0].1.item == 2)

        let fresh = Adam([("w", Tensor.zeros([2, 2], requiresGrad: true))])
        #expect(throws: StateDictError.keyMismatch(missing: ["state.w.exp_avg_sq"], unexpected: ["state.v.exp_avg_sq"])) {
            try fresh.loadState(state.map { ($0.0 == "state.w.exp_avg_sq" ? "state.v.exp_avg_sq" : $0.0, $0.1) })
        }
        #expect(throws: StateDictError.shapeMismatch(key: "state.w.exp_avg", expected: [2, 2], found: [4])) {
            try fresh.loadState(state.map { ($0.0, $0.0 == "state.w.exp_avg" ? $0.1.reshaped([4]) : $0.1) })
        }
        #expect(throws: StateDictError.self) {
            try fresh.loadState(state.map { ($0.0, $0.0 == "state.w.step" ? Tensor.scalar(1.5) : $0.1) })
        }
        #expect(fresh.stepCount(of: "w") == 0)  // failed loads change nothing
        try fresh.loadState(state)
        #expect(fresh.stepCount(of: "w") == 2)

        let sgd = SGD([("w", w)], lr: 0.1, momentum: 0.9)
        sgd.step()
        #expect(sgd.stateTensors().map(\.0) == ["state.w.momentum_buffer"])
        #expect(SGD([("w", w)], lr: 0.1).stateTensors().isEmpty)
    }

    @Test func resultsDoNotDependOnTheThreadCount() {
        func run(threads: Int) -> ([Float], Float) {
            Parallel.withThreads(threads) {
                var s = RandomStream(key: 21)
                let p = Tensor.uniform([70_001], low: -1, high: 1, stream: &s)
                let opt = Adam([("p", p)], lr: 0.01)
                p.grad = Tensor.uniform([70_001], low: -1, high: 1, stream: &s)
                let norm = clipGradNorm([p], maxNorm: 1)
                opt.step()
                return (p.array, norm)
            }
        }
        let one = run(threads: 1), two = run(threads: 2)
        #expect(one.0 == two.0 && one.1 == two.1)
    }
}
