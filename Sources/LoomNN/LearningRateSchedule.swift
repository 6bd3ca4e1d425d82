import Foundation

/// A learning rate as a function of the optimizer step, a value that configs can hold.
///
/// `step` is the 0-based index of the update about to be made (the number of updates made
/// so far). Linear warm-up scales by (step + 1) / warmupSteps, so the first update already
/// moves (lr / warmupSteps) and update `warmupSteps − 1` uses the full rate.
public enum LearningRateSchedule: Equatable, Sendable, Codable {
    /// `lr` throughout.
    case constant(lr: Double)
    /// Linear warm-up to `lr`, then constant.
    case linearWarmup(lr: Double, warmupSteps: Int)
    /// Linear warm-up to `lr`, then half a cosine from `lr` at step `warmupSteps` down to
    /// `minLR` at step `totalSteps`, and `minLR` after that.
    case cosine(lr: Double, warmupSteps: Int, totalSteps: Int, minLR: Double)

    /// The peak learning rate.
    public var peakLR: Double {
        switch self {
        case .constant(let lr), .linearWarmup(let lr, _), .cosine(let lr, _, _, _): return lr
        }
    }

    /// The learning rate for update `step` (0-based).
    public func lr(atStep step: Int) -> Double {
        switch self {
        case .constant(let lr):
            return lr
        case let .linearWarmup(lr, warmup):
            return lr * Self.warmupFactor(step, warmup)
        case let .cosine(lr, warmup, total, minLR):
            if step < warmup { return lr * Self.warmupFactor(step, warmup) }
            let span = total - warmup
            let progress = span > 0 ? min(1, Double(step - warmup) / Double(span)) : 1
            return minLR + (lr - minLR) * 0.5 * (1 + cos(Double.pi * progress))
        }
    }

    /// The learning rate for update `step` relative to the peak, to scale groups with
    /// different base rates.
    public func factor(atStep step: Int) -> Double {
        peakLR == 0 ? 0 : lr(atStep: step) / peakLR
    }

    private static func warmupFactor(_ step: Int, _ warmup: Int) -> Double {
        warmup > 0 ? min(1, Double(step + 1) / Double(warmup)) : 1
    }
}
