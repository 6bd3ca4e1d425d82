import Foundation
import Testing
import LoomNN

@Suite struct ScheduleTests {
    func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-12 * max(1, abs(b)) }

    @Test func constant() {
        let s = LearningRateSchedule.constant(lr: 2e-4)
        #expect([0, 1, 1_000_000].allSatisfy { s.lr(atStep: $0) == 2e-4 })
    }

    @Test func linearWarmup() {
        let s = LearningRateSchedule.linearWarmup(lr: 1e-3, warmupSteps: 10)
        #expect(close(s.lr(atStep: 0), 1e-4))
        #expect(close(s.lr(atStep: 4), 5e-4))
        #expect(close(s.lr(atStep: 9), 1e-3))
        #expect(close(s.lr(atStep: 500), 1e-3))
        #expect(LearningRateSchedule.linearWarmup(lr: 1, warmupSteps: 0).lr(atStep: 0) == 1)
    }

    @Test func cosineWithWarmup() {
        let s = LearningRateSchedule.cosine(lr: 1, warmupSteps: 10, totalSteps: 110, minLR: 0.1)
        #expect(close(s.lr(atStep: 4), 0.5))
        #expect(close(s.lr(atStep: 10), 1))
        #expect(close(s.lr(atStep: 35), 0.1 + 0.9 * 0.5 * (1 + 0.5.squareRoot())))  // a quarter: cos(π/4)
        #expect(close(s.lr(atStep: 60), 0.55))  // halfway
        #expect(close(s.lr(atStep: 110), 0.1))
        #expect(close(s.lr(atStep: 10_000), 0.1))
        #expect(close(s.factor(atStep: 60), 0.55))
        #expect(s.peakLR == 1)
    }

    @Test func codableRoundTrip() throws {
        let s = LearningRateSchedule.cosine(lr: 3e-4, warmupSteps: 5, totalSteps: 50, minLR: 0)
        let back = try JSONDecoder().decode(LearningRateSchedule.self, from: JSONEncoder().encode(s))
        #expect(back == s)
    }
}
