import Foundation
import LoomDiffusion
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// One rank's diffusion training state and its update step: the U-Net, its optimizer, the
/// EMA copy, the diffusion math, and the random streams of this rank (noise and timesteps,
/// label dropout, dropout layers; latent draws). The loop around it lives in `Trainer`.
/// With a first stage (latent diffusion) the batches are cached posteriors and each step
/// trains on z = (μ + σ·ε)·scale.
public final class DiffusionTask: TrainingTask {
    public let config: RunConfig
    public let settings: DiffusionFamily
    public let model: any DenoisingNetwork
    public let ema: EMA
    public let optimizer: Optimizer
    public let diffusion: GaussianDiffusion
    public let schedule: LearningRateSchedule
    let reducer: GradientReducer?
    /// Timesteps and noise for the training loss (per rank).
    public var noiseStream: RandomStream
    /// Label dropout for classifier-free guidance (per rank).
    public var labelStream: RandomStream
    /// Latent diffusion: the first stage and scale (nil in pixel space).
    public let latent: LatentSpace?
    /// Latent diffusion: ε of z = μ + σ·ε (per rank).
    public var latentStream: RandomStream
    public var step = 0

    /// Builds every piece from `config`; the initial weights come from the run seed (the
    /// same on every rank; the caller still broadcasts rank 0's state).
    public init(config: RunConfig, settings: DiffusionFamily, rank: Int, communicator: Communicator?, latent: LatentSpace? = nil) {
        self.config = config
        self.settings = settings
        self.latent = latent
        let seed = UInt64(bitPattern: Int64(config.seed))
        var initStream = RandomStream(seed: seed, purpose: .initialization)
        model = settings.network.make(stream: &initStream)
        model.dropoutRandom.stream = RandomStream(seed: seed, rank: rank, purpose: .dropout)
        noiseStream = RandomStream(seed: seed, rank: rank, purpose: .noise)
        labelStream = RandomStream(seed: seed &+ 1, rank: rank, purpose: .data)
        latentStream = RandomStream(seed: seed &+ 2, rank: rank, purpose: .noise)
        optimizer = config.optimizer.make(model.namedParameters())
        schedule = config.learningRateSchedule(lr: config.optimizer.lr)
        ema = EMA(of: model, decay: Float(config.ema.decay), warmup: config.ema.emaWarmup)
        diffusion = settings.diffusion.gaussianDiffusion
        if let c = communicator, c.size > 1 {
            reducer = GradientReducer(parameters: model.parameters(), communicator: c,
                                      bucketBytes: config.train.bucketMB << 20, overlap: config.train.overlapAllReduce)
        } else {
            reducer = nil
        }
    }

    // MARK: TrainingTask

    public var networks: [(name: String, tensors: [(String, Tensor)])] {
        [("model", model.stateDict()), ("ema", ema.stateDict())]
    }
    public var optimizers: [(name: String, optimizer: Optimizer)] { [("optimizer", optimizer)] }
    public var counters: [String: Int] {
        get { ["ema_updates": ema.updates, "grad_accum": config.train.gradAccum] }
        set { ema.resume(updates: newValue["ema_updates"] ?? 0) }
    }
    public var streams: [(purpose: String, stream: RandomStream)] {
        get {
            [("noise", noiseStream), ("labels", labelStream), ("dropout", model.dropoutRandom.stream)]
                + (latent != nil ? [("latents", latentStream)] : [])
        }
        set {
            noiseStream = newValue[0].stream
            labelStream = newValue[1].stream
            model.dropoutRandom.stream = newValue[2].stream
            if latent != nil { latentStream = newValue[3].stream }
        }
    }
    public var checkpointMetadata: [String: String] { latent?.metadata ?? [:] }
    public var replicatedParameters: [(String, Tensor)] { model.namedParameters() }
    public var batchesPerStep: Int { config.train.gradAccum }
    public var summary: String {
        "\(model.parameterCount) parameters" + (latent.map {
            ", latent diffusion on \($0.stage.latentShape.map(String.init).joined(separator: "×")) latents of \($0.stage.file) (scale \(String(format: "%.4f", $0.scale)))"
        } ?? "")
    }
    public var learningRates: [(String, Double)] { [("lr", schedule.lr(atStep: max(step - 1, 0)))] }

    public func preview(count: Int) throws -> Tensor {
        var s = RandomStream(key: 0)
        let net = settings.network.make(stream: &s)
        try ema.copy(into: net)
        let out = DiffusionSampling.sample(config: config, family: settings, model: net, count: count)
        return latent.map { $0.stage.decode(scaled: out, scale: $0.scale) } ?? out
    }

    /// The denoiser's clean input from a batch: images as they are; for latent diffusion
    /// z = (μ + σ·ε)·scale from cached posteriors `[B, h, w, 2c]` (ε from `latentStream`), or
    /// μ·scale from cached means `[B, h, w, c]`.
    func cleanInput(_ batch: Tensor) -> Tensor {
        guard let latent else { return batch }
        let c = settings.sampleShape[2]
        return noGrad {
            if batch.shape[3] == 2 * c {
                let parts = batch.chunked(2, axis: 3)
                return (parts[0] + parts[1] * Tensor.normal(parts[0].shape, stream: &latentStream)) * latent.scale
            }
            return batch * latent.scale
        }
    }

    /// The model as a denoiser closure.
    public func denoiser(_ net: any DenoisingNetwork) -> Denoiser {
        { x, t, labels in net(x, timesteps: t, labels: labels) }
    }

    /// One optimizer update from `train.grad_accum` micro-batches: loss, backward, gradient
    /// all-reduce, clipping, learning rate, optimizer, EMA. Metrics: this rank's mean loss,
    /// and the gradient norm before clipping (when clipping is on).
    public func trainStep(next: () throws -> Batch) throws -> [(String, Double)] {
        model.train()
        var total = 0.0
        let micro = config.train.gradAccum
        let scale = 1 / Float(micro)
        for k in 0..<micro {
            let batch = try next()
            // Overlapped all-reduces start only during the last micro-batch's backward.
            reducer?.startsDuringBackward = k == micro - 1
            var labels: [Int]? = nil
            if settings.classes > 0 {
                labels = labelDropout(labels: batch.labels, p: settings.diffusion.labelDropout,
                                      nullClass: settings.classes, stream: &labelStream)
            }
            OpProfiler.mark("step: labels")
            let loss = diffusion.trainingLoss(model: denoiser(model), x0: cleanInput(batch.images), labels: labels, stream: &noiseStream)
            total += Double(loss.item)
            (loss * scale).backward()
        }
        OpProfiler.mark("step: backward end")
        try reducer?.synchronize()
        OpProfiler.mark("step: gradient all-reduce wait")
        var metrics = [("loss", total / Double(micro))]
        if config.train.clipGradNorm > 0 {
            metrics.append(("grad_norm", Double(clipGradNorm(model.parameters(), maxNorm: Float(config.train.clipGradNorm)))))
        }
        optimizer.setLearningRate(schedule.lr(atStep: step))
        OpProfiler.mark("step: clip and schedule")
        noGrad { optimizer.step() }
        optimizer.zeroGrad()
        OpProfiler.mark("step: optimizer")
        noGrad { ema.update() }
        OpProfiler.mark("step: EMA")
        step += 1
        return metrics
    }
}
