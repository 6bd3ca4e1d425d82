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
    /// Timesteps and noise for the training loss; one stream per rank in training. A
    /// reference run on the whole global batch holds every rank's stream and draws each
    /// rank's rows from its own (the data-parallel equivalence self-test).
    public var noiseStreams: [RandomStream]
    /// Label dropout for classifier-free guidance, one stream per rank like `noiseStreams`.
    public var labelStreams: [RandomStream]
    /// Latent diffusion: the first stage and scale (nil in pixel space).
    public let latent: LatentSpace?
    /// Latent diffusion: ε of z = μ + σ·ε (per rank).
    public var latentStream: RandomStream
    public var step = 0

    /// Builds every piece from `config`; the initial weights come from the run seed (the
    /// same on every rank; the caller still broadcasts rank 0's state). `streams`: how many
    /// ranks' noise and label streams this task draws from (see `noiseStreams`).
    public init(config: RunConfig, settings: DiffusionFamily, rank: Int, communicator: Communicator?,
                latent: LatentSpace? = nil, streams: Int = 1) {
        self.config = config
        self.settings = settings
        self.latent = latent
        let seed = UInt64(bitPattern: Int64(config.seed))
        var initStream = RandomStream(seed: seed, purpose: .initialization)
        model = settings.network.make(stream: &initStream)
        model.dropoutRandom.stream = RandomStream(seed: seed, rank: rank, purpose: .dropout)
        noiseStreams = (0..<streams).map { RandomStream(seed: seed, rank: rank + $0, purpose: .noise) }
        labelStreams = (0..<streams).map { RandomStream(seed: seed &+ 1, rank: rank + $0, purpose: .data) }
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
            func named(_ name: String, _ s: [RandomStream]) -> [(String, RandomStream)] {
                s.enumerated().map { ($0.offset == 0 ? name : "\(name).\($0.offset)", $0.element) }
            }
            return named("noise", noiseStreams) + named("labels", labelStreams) + [("dropout", model.dropoutRandom.stream)]
                + (latent != nil ? [("latents", latentStream)] : [])
        }
        set {
            let n = noiseStreams.count
            noiseStreams = newValue[0..<n].map(\.stream)
            labelStreams = newValue[n..<2 * n].map(\.stream)
            model.dropoutRandom.stream = newValue[2 * n].stream
            if latent != nil { latentStream = newValue[2 * n + 1].stream }
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

    /// The random parts of one micro-batch's loss: timesteps, noise and (when conditional)
    /// labels after dropout, each rank's share of the rows from its own streams.
    func draws(shape: [Int], labels batchLabels: [Int]) -> (t: [Int], noise: Tensor, labels: [Int]?) {
        let shares = noiseStreams.count, rows = shape[0] / shares
        var t: [Int] = [], noise: [Tensor] = [], labels: [Int] = []
        for k in 0..<shares {
            let d = diffusion.trainingDraws(shape: [rows] + shape.dropFirst(), stream: &noiseStreams[k])
            t += d.t
            noise.append(d.noise)
            if settings.classes > 0 {
                labels += labelDropout(labels: Array(batchLabels[k * rows..<(k + 1) * rows]), p: settings.diffusion.labelDropout,
                                       nullClass: settings.classes, stream: &labelStreams[k])
            }
        }
        return (t, shares == 1 ? noise[0] : Tensor.concat(noise, axis: 0), settings.classes > 0 ? labels : nil)
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
            let x0 = cleanInput(batch.images)
            let (t, noise, labels) = draws(shape: x0.shape, labels: batch.labels)
            OpProfiler.mark("step: labels")
            let loss = diffusion.trainingLoss(model: denoiser(model), x0: x0, labels: labels, t: t, noise: noise)
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
