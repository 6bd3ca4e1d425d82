import Foundation
import Testing
import LoomTensor
import LoomNN

@Suite struct RMSpropTests {
    /// RMSprop as PyTorch documents it (no momentum, not centred), in double.
    func referenceRMSprop(lr: Double, alpha: Double, eps: Double, weightDecay: Double, steps: Int) -> [Double] {
        var p = OptData.initial
        var v = [Double](repeating: 0, count: p.count)
        for t in 1...steps {
            let g0 = OptData.gradient(t)
            for i in p.indices {
                let g = g0[i] + weightDecay * p[i]
                v[i] = alpha * v[i] + (1 - alpha) * g * g
                p[i] -= lr * g / (v[i].squareRoot() + eps)
            }
        }
        return p
    }

    func run(_ make: ([(String, Tensor)]) -> Optimizer, steps: Int) -> Tensor {
        let p = OptData.tensor(OptData.initial)
        p.requiresGrad = true
        let opt = make([("w", p)])
        for t in 1...steps {
            p.grad = OptData.tensor(OptData.gradient(t))
            opt.step()
        }
        return p
    }

    @Test func matchesHandComputedUpdates() {
        for (alpha, eps, wd) in [(0.99, 1e-8, 0.0), (0.9, 1e-3, 0.1)] {
            let p = run({ RMSprop($0, lr: 0.01, alpha: alpha, eps: eps, weightDecay: wd) }, steps: 4)
            OptData.expectClose(p, referenceRMSprop(lr: 0.01, alpha: alpha, eps: eps, weightDecay: wd, steps: 4))
        }
    }

    @Test func firstStepIsLearningRateOverSqrtOneMinusAlpha() {
        // v = (1 − α)g², so p moves by lr·g/(|g|·√(1 − α)) = lr·sign(g)/√(1 − α) (up to ε).
        let w = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        let opt = RMSprop([("w", w)], lr: 0.01)
        w.grad = Tensor([0.5, -4, 0], shape: [3])
        opt.step()
        OptData.expectClose(w, [1 - 0.1, 2 + 0.1, 3], tolerance: 1e-6)
        #expect(opt.stepCount(of: "w") == 1)
    }

    @Test func stateNamesAndSaveRestoreContinueIsBitwiseIdentical() throws {
        let w = Tensor.zeros([2, 3], requiresGrad: true)
        let opt = RMSprop([("w", w)], lr: 0.1)
        w.grad = Tensor.ones([2, 3])
        opt.step()
        opt.step()
        let state = opt.stateTensors()
        #expect(state.map(\.0) == ["state.w.step", "state.w.square_avg"])
        #expect(state[0].1.item == 2)
        #expect(abs(state[1].1.array[0] - Float(1 - 0.99 * 0.99)) < 1e-7)

        func trajectory(stopAfter: Int?) throws -> [Float] {
            var s = RandomStream(key: 3)
            var p = Tensor.uniform([41], low: -1, high: 1, stream: &s)
            var opt = RMSprop([("p", p)], lr: 0.01, weightDecay: 0.01)
            for t in 0..<5 {
                if t == stopAfter {
                    let saved = opt.stateTensors()
                    p = p.copy()
                    opt = RMSprop([("p", p)], lr: 0.01, weightDecay: 0.01)
                    try opt.loadState(saved)
                }
                var gs = RandomStream(key: UInt64(50 + t))
                p.grad = Tensor.uniform([41], low: -1, high: 1, stream: &gs)
                opt.step()
            }
            return p.array
        }
        #expect(try trajectory(stopAfter: nil) == trajectory(stopAfter: 2))
    }
}
