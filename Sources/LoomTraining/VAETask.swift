import Foundation
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// One rank's VAE training state and its update step: the autoencoder and its optimizer,
/// the PatchGAN discriminator and its optimizer when `vae.disc_weight` > 0, this rank's
/// reparameterisation noise stream, and the fixed held-out images whose PSNR is logged.
///
/// A step: encode, z = μ + σ·ε, decode, loss (likelihood VAEs: NLL + β·KL; KL autoencoder:
/// Σ|x − x̂|/B + kl_weight·KL/B [+ adaptive weight · −mean D(x̂) from `vae.disc_start`]),
/// backward, all-reduce, update; then, from `vae.disc_start`, one hinge update of D on the
/// batch and this step's reconstructions (latent diffusion's `LPIPSWithDiscriminator`
/// without LPIPS).
public final class VAETask: TrainingTask {
    /// The run's config and its VAE settings.
    public let config: RunConfig
    public let settings: VAEFamily
    /// The autoencoder, and the PatchGAN when `vae.disc_weight` > 0.
    public let model: any VariationalAutoencoder
    public let discriminator: PatchDiscriminator?
    /// Their optimizers (checkpoint groups `optimizer`, `optimizer_d`).
    public let optimizer: Optimizer
    public let optimizerD: Optimizer?
    let schedule: LearningRateSchedule
    let scheduleD: LearningRateSchedule
    let reducer: GradientReducer?
    let reducerD: GradientReducer?
    /// Reparameterisation noise; one stream per rank in training. A reference run on the
    /// whole global batch holds every rank's stream and draws each rank's rows from its own.
    public var noise: [RandomStream]
    /// Updates made so far.
    public var step = 0
    /// Discriminator updates made so far.
    var discUpdates = 0
    /// The fixed held-out images (nil: no PSNR metric, e.g. `loom bench train` without data).
    public let heldOut: HeldOutImages?
    /// The step this process's current log window started at (see `heldOutMetric`).
    var windowStart: Int?

    /// Builds the networks from the run seed (the caller broadcasts rank 0's state).
    public init(config: RunConfig, settings: VAEFamily, rank: Int, communicator: Communicator?,
                streams: Int = 1, heldOut: HeldOutImages? = nil) {
        self.config = config
        self.settings = settings
        self.heldOut = heldOut
        let seed = UInt64(bitPattern: Int64(config.seed))
        var initStream = RandomStream(seed: seed, purpose: .initialization)
        model = settings.makeModel(stream: &initStream)
        let v = settings.vae
        discriminator = v.adversarial
            ? PatchDiscriminator(inChannels: settings.sampleShape[2], width: v.discChannels, layers: v.discLayers, stream: &initStream)
            : nil
        noise = (0..<streams).map { RandomStream(seed: seed, rank: rank + $0, purpose: .noise) }
        // vae.scale_lr: rates per image of the global batch (every rank's, or the whole-batch run's).
        let scale = v.scaleLR ? Double(config.train.batchSize * (communicator?.size ?? 1)) : 1
        let lr = config.optimizer.lr * scale
        optimizer = config.optimizer.make(model.namedParameters(), lr: lr)
        schedule = config.learningRateSchedule(lr: lr)
        let lrD = (v.lrD > 0 ? v.lrD : config.optimizer.lr) * scale
        optimizerD = discriminator.map { config.optimizer.make($0.namedParameters(), lr: lrD) }
        scheduleD = config.learningRateSchedule(lr: lrD)
        if let c = communicator, c.size > 1 {
            let t = config.train
            reducer = GradientReducer(parameters: model.parameters(), communicator: c,
                                      bucketBytes: t.bucketMB << 20, overlap: t.overlapAllReduce)
            reducerD = discriminator.map { GradientReducer(parameters: $0.parameters(), communicator: c,
                                                           bucketBytes: t.bucketMB << 20, overlap: t.overlapAllReduce) }
            if t.syncBatchNorm, let d = discriminator {
                for (_, m) in d.namedModules() { (m as? BatchNorm2d)?.reducer = c }
            }
        } else {
            reducer = nil
            reducerD = nil
        }
    }

    // MARK: TrainingTask

    public var networks: [(name: String, tensors: [(String, Tensor)])] {
        [("model", model.stateDict())] + (discriminator.map { [("discriminator", $0.stateDict())] } ?? [])
    }
    public var optimizers: [(name: String, optimizer: Optimizer)] {
        [("optimizer", optimizer)] + (optimizerD.map { [("optimizer_d", $0)] } ?? [])
    }
    public var counters: [String: Int] {
        get { discriminator == nil ? [:] : ["disc_updates": discUpdates] }
        set { discUpdates = newValue["disc_updates"] ?? 0 }
    }
    public var streams: [(purpose: String, stream: RandomStream)] {
        get { noise.enumerated().map { ($0.offset == 0 ? "noise" : "noise.\($0.offset)", $0.element) } }
        set { noise = newValue.map(\.stream) }
    }
    public var replicatedParameters: [(String, Tensor)] {
        model.namedParameters().map { ("model.\($0.0)", $0.1) }
            + (discriminator?.namedParameters().map { ("discriminator.\($0.0)", $0.1) } ?? [])
    }
    public var batchesPerStep: Int { 1 }
    public var summary: String {
        var s = "\(model.parameterCount) parameters"
        if let d = discriminator { s += " + discriminator \(d.parameterCount)" }
        s += " (\(settings.summary))"
        if let h = heldOut { s += "; PSNR on \(h.images.shape[0]) held-out images of the \(h.split) split" }
        return s
    }
    public var learningRates: [(String, Double)] {
        let s = max(step - 1, 0)
        return [("lr", schedule.lr(atStep: s))] + (discriminator == nil ? [] : [("lr_d", scheduleD.lr(atStep: s))])
    }

    /// Held-out input/reconstruction pairs (posterior means) side by side, then prior samples
    /// from the run seed: with 64 images, 4 rows of pairs and 4 rows of samples.
    public func preview(count: Int) throws -> Tensor {
        let pairs = min(count / 4, heldOut?.images.shape[0] ?? 0)
        let prior = VAESampling.prior(model, family: settings, count: count - 2 * pairs,
                                      seed: UInt64(bitPattern: Int64(config.seed)))
        guard pairs > 0, let h = heldOut else { return prior }
        let inputs = h.images.sliced(axis: 0, 0..<pairs)
        return Tensor.concat([VAESampling.interleave(inputs, VAESampling.reconstruct(model, family: settings, inputs)), prior], axis: 0)
    }

    // MARK: The step

    /// `rows` × `shape` standard normals, each rank's share of the rows from its own stream.
    func normal(rows: Int, _ shape: [Int]) -> Tensor {
        let parts = noise.indices.map { i in Tensor.normal([rows / noise.count] + shape, stream: &noise[i]) }
        return parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 0)
    }

    public func trainStep(next: () throws -> Batch) throws -> [(String, Double)] {
        let v = settings.vae
        let x = try next().images, b = Float(x.shape[0])
        if windowStart == nil { windowStart = step }
        model.train()
        optimizer.setLearningRate(schedule.lr(atStep: step))
        let posterior = model.encode(x)
        let z = posterior.sample(epsilon: normal(rows: x.shape[0], model.latentShape))
        let out = model.decode(z)
        let kl = posterior.klSum() / b
        OpProfiler.mark("step: forward")
        var metrics: [(String, Double)]
        let loss: Tensor
        if settings.type.hasLikelihood {
            let nll = negativeLogLikelihood(logits: out, images: x) / b
            loss = nll + kl * Float(v.beta)
            let bound = Double(nll.item + kl.item), dims = Double(x.count) / Double(b)
            metrics = [("loss", Double(loss.item)), ("nll", Double(nll.item)), ("kl", Double(kl.item)),
                       ("elbo", -bound), ("bits_per_dim", bound / (dims * log(2)))]
        } else {
            let rec = l1Loss(out, x, reduction: .sum) / b
            var total = rec + kl * Float(v.klWeight)
            metrics = [("loss", 0), ("rec", Double(rec.item)), ("kl", Double(kl.item))]
            if let d = discriminator {
                var gValue = 0.0, weight = 0.0
                if step >= v.discStart {
                    // D frozen: the adversarial loss reaches the decoder without D weight gradients.
                    d.requiresGrad(false)
                    let g = AutoencoderAdversarialLoss.generator(fake: d(out))
                    weight = AutoencoderAdversarialLoss.adaptiveWeight(reconstruction: rec, generator: g,
                                                                      lastLayer: model.lastLayerWeight, discWeight: v.discWeight)
                    total = total + g * Float(weight)
                    gValue = Double(g.item)
                    d.requiresGrad(true)
                }
                metrics += [("g_loss", gValue), ("d_weight", weight)]
            }
            loss = total
            metrics[0].1 = Double(loss.item)
        }
        loss.backward()
        OpProfiler.mark("step: backward")
        try reducer?.synchronize()
        clip(model.parameters())
        noGrad { optimizer.step() }
        optimizer.zeroGrad()
        OpProfiler.mark("step: update")
        if let d = discriminator, let optimizerD {
            var dValue = 0.0
            if step >= v.discStart {
                optimizerD.setLearningRate(scheduleD.lr(atStep: step))
                let dLoss = AutoencoderAdversarialLoss.discriminatorHinge(real: d(x), fake: d(out.detached()))
                dValue = Double(dLoss.item)
                dLoss.backward()
                try reducerD?.synchronize()
                clip(d.parameters())
                noGrad { optimizerD.step() }
                optimizerD.zeroGrad()
                discUpdates += 1
                OpProfiler.mark("step: discriminator")
            }
            metrics.append(("d_loss", dValue))
        }
        step += 1
        if let h = heldOut { metrics.append(("psnr", heldOutMetric(h))) }
        return metrics
    }

    /// −log p(x|z) summed over the batch, for images in [-1, 1] rescaled to [0, 1].
    func negativeLogLikelihood(logits: Tensor, images x: Tensor) -> Tensor {
        let target = (x + 1) * 0.5
        switch settings.vae.likelihood {
        case .bernoulli:
            return bceWithLogitsLoss(logits, target, reduction: .sum)
        case .gaussian:
            let s = settings.vae.sigma
            let normaliser = Float(Double(x.count) * 0.5 * log(2 * Double.pi * s * s))
            return mseLoss(logits.sigmoid(), target, reduction: .sum) * Float(1 / (2 * s * s)) + normaliser
        }
    }

    /// The held-out PSNR, measured once per log window on the weights of the log step. The
    /// loop logs the mean of each metric over the window's steps, so the value is reported as
    /// PSNR × (steps in the window) on the log step and 0 on the others; their mean is the PSNR.
    func heldOutMetric(_ h: HeldOutImages) -> Double {
        let logEvery = config.logging.every
        guard step % logEvery == 0 || step == config.train.maxSteps, let start = windowStart else { return 0 }
        windowStart = step
        let recon = VAESampling.reconstruct(model, family: settings, h.images)
        return VAESampling.metrics(h.images, recon).psnr * Double(step - start)
    }

    /// `train.clip_grad_norm` on one network's (all-reduced) gradients.
    func clip(_ parameters: [Tensor]) {
        if config.train.clipGradNorm > 0 { _ = clipGradNorm(parameters, maxNorm: Float(config.train.clipGradNorm)) }
    }
}
