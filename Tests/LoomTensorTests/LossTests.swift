import Foundation
import Testing
import LoomTensor

/// Reduces double-precision per-element losses the way `reduction` says.
private func reduce(_ v: [Double], _ reduction: Reduction) -> [Double] {
    switch reduction {
    case .none: return v
    case .sum: return [v.reduce(0, +)]
    case .mean: return [v.reduce(0, +) / Double(v.count)]
    }
}

private func close(_ a: [Float], _ b: [Double], tol: Double = 1e-5) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { Swift.abs(Double($0) - $1) <= tol * Swift.max(1, Swift.abs($1)) }
}

/// Prediction and target whose differences stay away from 0 (the kink of |p - t|).
private func separatedPair(_ shape: [Int]) -> [Tensor] {
    let p = GradCheck.inputs([shape], seed: 4)[0]
    let offset = KinkFree.inputs(shape, seed: 5)
    let t = Tensor(zip(p.array, offset.array).map { $0 + $1 }, shape: shape, requiresGrad: true)
    return [p, t]
}

@Suite struct LossTests {
    static let reductions: [Reduction] = [.mean, .sum, .none]

    @Test(arguments: reductions)
    func valuesMatchDoubleFormulas(reduction: Reduction) {
        let xs = GradCheck.inputs([[3, 37], [3, 37]], low: -2, high: 2)
        let p = xs[0].array.map(Double.init), t = xs[1].array.map(Double.init)
        let mse = mseLoss(xs[0], xs[1], reduction: reduction)
        #expect(close(mse.array, reduce(zip(p, t).map { ($0 - $1) * ($0 - $1) }, reduction)))
        let l1 = l1Loss(xs[0], xs[1], reduction: reduction)
        #expect(close(l1.array, reduce(zip(p, t).map { Swift.abs($0 - $1) }, reduction)))
        #expect(mse.shape == (reduction == .none ? [3, 37] : []))
        // BCE against targets in [0, 1], including saturated logits.
        let logits = Tensor(xs[0].array.map { $0 * 4 } + [-100, -30, 30, 100, 0], shape: [116])
        let targets = Tensor(xs[1].array.map { ($0 + 2) / 4 } + [1, 0.5, 0, 0.25, 1], shape: [116])
        let bce = bceWithLogitsLoss(logits, targets, reduction: reduction)
        // The definition -[t·log σ(x) + (1-t)·log σ(-x)], with log σ in double precision.
        func logSigmoid(_ x: Double) -> Double { x < 0 ? x - Foundation.log1p(Foundation.exp(x)) : -Foundation.log1p(Foundation.exp(-x)) }
        let expected = zip(logits.array, targets.array).map { (x, t) -> Double in
            -(Double(t) * logSigmoid(Double(x)) + (1 - Double(t)) * logSigmoid(-Double(x)))
        }
        #expect(bce.array.allSatisfy { $0.isFinite })
        #expect(close(bce.array, reduce(expected, reduction), tol: 2e-5))
        if reduction == .none {
            // Logit 0 costs log 2 whatever the target; logit 100 against target 0.25 costs 75.
            #expect(Swift.abs(bce.array[115] - Float(M_LN2)) < 1e-6)
            #expect(Swift.abs(bce.array[114] - 75) < 1e-4)
        }
    }

    @Test(arguments: reductions)
    func gradientsForBothArguments(reduction: Reduction) {
        // eps 1e-2: a summed loss is a float of size ~100, whose rounding swamps smaller steps.
        let xs = GradCheck.inputs([[3, 37], [3, 37]], low: -2, high: 2)
        #expect(GradCheck.maxError(xs, eps: 1e-2) { mseLoss($0[0], $0[1], reduction: reduction) } < 1e-2)
        let pair = separatedPair([3, 37])
        #expect(GradCheck.maxError(pair, eps: 1e-2) { l1Loss($0[0], $0[1], reduction: reduction) } < 1e-2)
        let targets = GradCheck.inputs([[3, 37]], low: 0, high: 1, seed: 9)
        let bce = [GradCheck.inputs([[3, 37]], low: -4, high: 4)[0], targets[0]]
        #expect(GradCheck.maxError(bce, eps: 1e-2) { bceWithLogitsLoss($0[0], $0[1], reduction: reduction) } < 1e-2)
    }

    @Test(arguments: reductions)
    func secondOrder(reduction: Reduction) {
        let xs = GradCheck.inputs([[3, 37], [3, 37]], low: -2, high: 2)
        #expect(GradCheck.maxSecondOrderError(xs, eps: 1e-3) { mseLoss($0[0], $0[1], reduction: reduction) } < 2e-2)
        // |p - t| is piecewise linear: squaring it makes the first-order graph run through
        // the composite backward with a gradient that depends on the inputs.
        let pair = separatedPair([3, 37])
        #expect(GradCheck.maxSecondOrderError(pair, eps: 1e-3) { l1Loss($0[0], $0[1], reduction: reduction).square() } < 2e-2)
        let targets = GradCheck.inputs([[3, 37]], low: 0, high: 1, seed: 9)
        let bce = [GradCheck.inputs([[3, 37]], low: -4, high: 4)[0], targets[0]]
        #expect(GradCheck.maxSecondOrderError(bce, eps: 1e-3) { bceWithLogitsLoss($0[0], $0[1], reduction: reduction) } < 2e-2)
    }

    @Test(arguments: reductions)
    func fusedAndCompositeBackwardsAgree(reduction: Reduction) {
        let xs = GradCheck.inputs([[1037], [1037]], low: -3, high: 3)
        #expect(KinkFree.fusedVsComposite(xs) { mseLoss($0[0], $0[1], reduction: reduction) } < 1e-5)
        #expect(KinkFree.fusedVsComposite(separatedPair([1037])) { l1Loss($0[0], $0[1], reduction: reduction) } < 1e-5)
        let bce = [xs[0], GradCheck.inputs([[1037]], low: 0, high: 1, seed: 9)[0]]
        #expect(KinkFree.fusedVsComposite(bce) { bceWithLogitsLoss($0[0], $0[1], reduction: reduction) } < 1e-5)
    }

    @Test func onlyTheRequestedGradientIsComputed() {
        // A target that needs no gradient (the usual case) leaves it without one.
        let p = GradCheck.inputs([[5]])[0]
        let t = Tensor([0.1, 0.2, 0.3, 0.4, 0.5], shape: [5])
        mseLoss(p, t).backward()
        #expect(t.grad == nil)
        let expected = zip(p.array, t.array).map { 2 * ($0 - $1) / 5 }
        #expect(zip(p.grad!.array, expected).allSatisfy { Swift.abs($0 - $1) < 1e-6 })
    }
}
