import Testing
import LoomTensor
import LoomNN

/// A module with one 37-element parameter (SIMD blocks and a tail) and a buffer.
final class Tracked: Module {
    @Parameter var weight = Tensor.zeros([37])
    @Buffer var count = Tensor.zeros([2])
}

@Suite struct EMATests {
    /// The parameter values set before update `k`.
    func values(_ k: Int) -> [Double] { (0..<37).map { i in Double(i % 5) - 2 + 0.5 * Double(k * (i % 3)) } }

    /// The decay of update `k` (0-based) written out independently of `EMA`: `.none` the
    /// constant; `.ramp` min(d, (1 + u) / (10 + u)) with u = k + 1 updates including this one
    /// (latent diffusion's LitEma); `.copyBefore(step: s)` 0 (a copy) for the first s updates, then d.
    func plainDecay(_ warmup: EMA.Warmup, decay: Float, update k: Int) -> Double {
        switch warmup {
        case .none: return Double(decay)
        case .ramp: return min(Double(decay), Double(2 + k) / Double(11 + k))
        case .copyBefore(let s): return k < s ? 0 : Double(decay)
        }
    }

    /// Runs updates with the parameter set to `values(1...)`, returning the shadow and what
    /// the recurrence s ← d·s + (1 − d)·p gives with `plainDecay`'s decays (not EMA's own).
    func check(_ warmup: EMA.Warmup, decay: Float, updates: Int) -> (Tensor, [Double], EMA) {
        let m = Tracked()
        m.weight.assign(OptData.tensor(values(0)))
        let ema = EMA(of: m, decay: decay, warmup: warmup)
        var expected = values(0)
        for k in 1...updates {
            m.weight.assign(OptData.tensor(values(k)))
            let d = plainDecay(warmup, decay: decay, update: k - 1)
            expected = zip(expected, values(k)).map { d * $0 + (1 - d) * $1 }
            ema.update()
        }
        return (ema.shadowParameters[0].1, expected, ema)
    }

    @Test func constantDecayMatchesClosedForm() {
        let (shadow, _, ema) = check(.none, decay: 0.9, updates: 3)
        // s₃ = d³p₀ + (1 − d)(d²p₁ + d p₂ + p₃)
        let d = 0.9
        let closed = (0..<37).map { i in
            d * d * d * values(0)[i] + (1 - d) * (d * d * values(1)[i] + d * values(2)[i] + values(3)[i])
        }
        OptData.expectClose(shadow, closed, tolerance: 1e-6)
        #expect(ema.updates == 3)
    }

    @Test func rampDecay() {
        let (shadow, expected, ema) = check(.ramp, decay: 0.5, updates: 9)
        #expect(ema.decay(forUpdate: 0) == Float(2) / 11)
        #expect(ema.decay(forUpdate: 1) == Float(3) / 12)
        #expect(ema.decay(forUpdate: 6) == Float(8) / 17)
        #expect(ema.decay(forUpdate: 7) == 0.5)
        #expect(ema.decay(forUpdate: 1000) == 0.5)
        OptData.expectClose(shadow, expected, tolerance: 1e-6)
    }

    @Test func copyBeforeWarmup() {
        let (shadow, expected, ema) = check(.copyBefore(step: 2), decay: 0.75, updates: 3)
        #expect((0..<4).map { ema.decay(forUpdate: $0) } == [0, 0, 0.75, 0.75])
        // Two copies, then one average: s = 0.75·p₂ + 0.25·p₃.
        OptData.expectClose(shadow, (0..<37).map { 0.75 * values(2)[$0] + 0.25 * values(3)[$0] }, tolerance: 1e-6)
        OptData.expectClose(shadow, expected, tolerance: 1e-6)
    }

    @Test func buffersAreCopiedAndShadowsLoadIntoAModel() throws {
        let m = Tracked()
        let ema = EMA(of: m, decay: 0.999)
        m.count.assign(Tensor([3, 4], shape: [2]))
        m.weight.assign(Tensor(repeating: 1, shape: [37]))
        ema.update()
        #expect(ema.shadowBuffers[0].1.array == [3, 4])
        #expect(ema.stateDict().map(\.0) == ["weight", "count"])
        let copy = Tracked()
        try ema.copy(into: copy)
        OptData.expectClose(copy.weight, [Double](repeating: 0.001, count: 37), tolerance: 1e-6)
        #expect(copy.count.array == [3, 4])
        // The shadows are copies: the module's tensors are not touched by EMA.
        #expect(m.weight.array.allSatisfy { $0 == 1 })
    }

    @Test func saveRestoreContinueIsBitwiseIdentical() throws {
        func run(stopAfter: Int?) throws -> [Float] {
            let m = Tracked()
            var ema = EMA(of: m, decay: 0.99, warmup: .ramp)
            for k in 1...5 {
                if k == stopAfter {
                    let saved = ema.stateTensors()
                    ema = EMA(of: m, decay: 0.99, warmup: .ramp)
                    try ema.load(saved)
                    #expect(ema.updates == k - 1)
                }
                m.weight.assign(OptData.tensor(values(k)))
                ema.update()
            }
            return ema.shadowParameters[0].1.array
        }
        #expect(try run(stopAfter: nil) == run(stopAfter: 3))
    }

    @Test func loadErrors() {
        let ema = EMA(of: Tracked(), decay: 0.9)
        let state = ema.stateTensors()
        #expect(state.map(\.0) == ["weight", "count", "num_updates"])
        #expect(throws: StateDictError.keyMismatch(missing: ["num_updates"], unexpected: [])) {
            try ema.load(Array(state.dropLast()))
        }
        #expect(throws: StateDictError.shapeMismatch(key: "weight", expected: [37], found: [1, 37])) {
            try ema.load(state.map { ($0.0, $0.0 == "weight" ? $0.1.reshaped([1, 37]) : $0.1) })
        }
    }
}
