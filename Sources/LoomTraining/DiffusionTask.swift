import Foundation
import LoomDiffusion
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// One rank's diffusion training state and its update step: the U-Net, AdamW, the EMA copy,
/// the diffusion math, and the random streams of this rank (noise and timesteps, label
/// dropout, dropout layers). The loop around it lives in `Trainer`.
public final class DiffusionTask {
    public let config: RunConfig
    public let model: UNet
    public let ema: EMA
    public let optimizer: Optimizer
    public let diffusion: GaussianDiffusion
    public let schedule: LearningRateSchedule
    let reducer: GradientReducer?
    /// Timesteps and noise for the training loss (per rank).
    public var noiseStream: RandomStream
    /// Label dropout for classifier-free guidance (per rank).
    public var labelStream: RandomStream
    /// Optimizer updates made so far.
    public var step = 0

    /// Builds every piece from `config`; the initial weights come from the run seed (the
    /// same on every rank; the caller still broadcasts rank 0's state).
    public init(config: RunConfig, rank: Int, communicator: Communicator?) {
        self.config = config
        let seed = UInt64(bitPattern: Int64(config.seed))
        var initStream = RandomStream(seed: seed, purpose: .initialization)
        model = UNet(config.model, stream: &initStream)
        model.dropoutRandom.stream = RandomStream(seed: seed, rank: rank, purpose: .dropout)
        noiseStream = RandomStream(seed: seed, rank: rank, purpose: .noise)
        labelStream = RandomStream(seed: seed &+ 1, rank: rank, purpose: .data)

        let o = config.optimizer
        let params = model.namedParameters()
        switch o.type {
        case "sgd":
            optimizer = SGD(params, lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay)
        case "adam":
            optimizer = Adam(params, lr: o.lr, betas: (o.betas[0], o.betas[1]), eps: o.eps, weightDecay: o.weightDecay)
        default:
            optimizer = AdamW(params, lr: o.lr, betas: (o.betas[0], o.betas[1]), eps: o.eps, weightDecay: o.weightDecay)
        }
        switch config.schedule.type {
        case "linear_warmup": schedule = .linearWarmup(lr: o.lr, warmupSteps: config.schedule.warmupSteps)
        case "cosine": schedule = .cosine(lr: o.lr, warmupSteps: config.schedule.warmupSteps,
                                          totalSteps: config.train.maxSteps, minLR: config.schedule.minLR)
        default: schedule = .constant(lr: o.lr)
        }
        let warmup: EMA.Warmup
        switch config.ema.warmup {
        case "ramp": warmup = .ramp
        case "steps": warmup = .copyBefore(step: config.ema.startStep)
        default: warmup = .none
        }
        ema = EMA(of: model, decay: Float(config.ema.decay), warmup: warmup)

        diffusion = config.diffusion.gaussianDiffusion
        if let c = communicator, c.size > 1 {
            reducer = GradientReducer(parameters: model.parameters(), communicator: c,
                                      bucketBytes: config.train.bucketMB << 20, overlap: config.train.overlapAllReduce)
        } else {
            reducer = nil
        }
    }

    /// The model as a denoiser closure.
    public func denoiser(_ net: UNet) -> Denoiser {
        { x, t, labels in net(x, timesteps: t, labels: labels) }
    }

    /// One optimizer update from `microBatches` (gradient accumulation): loss, backward,
    /// gradient all-reduce, clipping, learning rate, AdamW, EMA. Returns this rank's mean loss
    /// and the gradient norm before clipping (when clipping is on).
    public func trainStep(_ microBatches: [Batch]) throws -> (loss: Double, gradNorm: Double?) {
        model.train()
        var total = 0.0
        let scale = 1 / Float(microBatches.count)
        for (k, batch) in microBatches.enumerated() {
            // Overlapped all-reduces start only during the last micro-batch's backward.
            reducer?.startsDuringBackward = k == microBatches.count - 1
            var labels: [Int]? = nil
            if config.model.classes > 0 {
                labels = labelDropout(labels: batch.labels, p: config.diffusion.labelDropout,
                                      nullClass: config.model.classes, stream: &labelStream)
            }
            OpProfiler.mark("step: labels")
            let loss = diffusion.trainingLoss(model: denoiser(model), x0: batch.images, labels: labels, stream: &noiseStream)
            total += Double(loss.item)
            (loss * scale).backward()
        }
        OpProfiler.mark("step: backward end")
        try reducer?.synchronize()
        OpProfiler.mark("step: gradient all-reduce wait")
        var norm: Double?
        if config.train.clipGradNorm > 0 {
            norm = Double(clipGradNorm(model.parameters(), maxNorm: Float(config.train.clipGradNorm)))
        }
        optimizer.setLearningRate(schedule.lr(atStep: step))
        OpProfiler.mark("step: clip and schedule")
        noGrad { optimizer.step() }
        optimizer.zeroGrad()
        OpProfiler.mark("step: optimizer")
        noGrad { ema.update() }
        OpProfiler.mark("step: EMA")
        step += 1
        return (total / Double(microBatches.count), norm)
    }
}

extension RunConfig.DiffusionSettings {
    /// The diffusion math these settings describe (schedule, target, loss weighting, offset noise).
    public var gaussianDiffusion: GaussianDiffusion {
        GaussianDiffusion(
            schedule: schedule == "cosine"
                ? .cosine(timesteps: timesteps)
                : .linear(timesteps: timesteps, start: betaStart, end: betaEnd),
            target: PredictionTarget(rawValue: prediction) ?? .epsilon,
            weighting: lossWeighting == "min_snr" ? .minSNR(gamma: minSNRGamma) : .uniform,
            offsetNoise: Float(offsetNoise))
    }
}
