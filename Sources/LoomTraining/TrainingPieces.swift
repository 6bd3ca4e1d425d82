import LoomNN
import LoomTensor

/// The pieces every family builds the same way from the common config sections.
extension RunConfig.OptimizerSettings {
    /// The optimizer `optimizer.type` names, over `parameters`, at learning rate `lr` (default `optimizer.lr`).
    public func make(_ parameters: [(String, Tensor)], lr: Double? = nil) -> Optimizer {
        let lr = lr ?? self.lr
        switch type {
        case .sgd: return SGD(parameters, lr: lr, momentum: momentum, weightDecay: weightDecay)
        case .adam: return Adam(parameters, lr: lr, betas: (betas[0], betas[1]), eps: eps, weightDecay: weightDecay)
        case .adamw: return AdamW(parameters, lr: lr, betas: (betas[0], betas[1]), eps: eps, weightDecay: weightDecay)
        case .rmsprop: return RMSprop(parameters, lr: lr, alpha: alpha, eps: eps, weightDecay: weightDecay)
        }
    }
}

extension RunConfig {
    /// The learning-rate schedule of `schedule:` around a base rate `lr`.
    public func learningRateSchedule(lr: Double) -> LearningRateSchedule {
        switch schedule.type {
        case .constant: return .constant(lr: lr)
        case .linear_warmup: return .linearWarmup(lr: lr, warmupSteps: schedule.warmupSteps)
        case .cosine: return .cosine(lr: lr, warmupSteps: schedule.warmupSteps, totalSteps: train.maxSteps, minLR: schedule.minLR)
        }
    }
}

extension RunConfig.EMASettings {
    /// How the EMA starts (`ema.warmup`, `ema.start_step`).
    public var emaWarmup: EMA.Warmup {
        switch warmup {
        case .ramp: return .ramp
        case .steps: return .copyBefore(step: startStep)
        case .none: return .none
        }
    }
}
