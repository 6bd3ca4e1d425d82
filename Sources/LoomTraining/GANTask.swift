import Foundation
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// One rank's GAN training state and its update step: G, D, G's EMA, one optimizer each,
/// and this rank's noise stream (latent vectors, penalty interpolation weights).
///
/// A step is `gan.n_critic` D updates, each on a fresh real batch and a fresh fake batch,
/// then one G update that reuses the last fake batch with D frozen (no D weight gradients
/// computed or all-reduced), then the EMA of G (workload W3).
public final class GANTask: TrainingTask {
    public let config: RunConfig
    public let settings: GANFamily
    public let generator: DCGANGenerator
    public let discriminator: DCGANDiscriminator
    public let ema: EMA
    public let optimizerG: Optimizer
    public let optimizerD: Optimizer
    let scheduleG: LearningRateSchedule
    let scheduleD: LearningRateSchedule
    let reducerG: GradientReducer?
    let reducerD: GradientReducer?
    /// The noise streams; one per rank in training. A reference run on the whole global
    /// batch (the data-parallel equivalence test) holds every rank's stream and draws each
    /// rank's rows from its own stream, in rank order.
    public var noise: [RandomStream]
    public var step = 0
    /// Critic updates made so far (lazy R1 counts them).
    var criticUpdates = 0
    /// The last R1 value computed (reported every step while R1 is on).
    var lastR1 = 0.0

    /// Builds both networks from the run seed (the caller broadcasts rank 0's state).
    /// `streams`: how many ranks' noise streams this task draws from (see `noise`).
    public init(config: RunConfig, settings: GANFamily, rank: Int, communicator: Communicator?, streams: Int = 1) {
        self.config = config
        self.settings = settings
        let seed = UInt64(bitPattern: Int64(config.seed))
        var initStream = RandomStream(seed: seed, purpose: .initialization)
        generator = DCGANGenerator(settings.model, stream: &initStream)
        discriminator = DCGANDiscriminator(settings.model, stream: &initStream)
        noise = (0..<streams).map { RandomStream(seed: seed, rank: rank + $0, purpose: .noise) }
        let lrG = settings.gan.lrG > 0 ? settings.gan.lrG : config.optimizer.lr
        let lrD = settings.gan.lrD > 0 ? settings.gan.lrD : config.optimizer.lr
        optimizerG = config.optimizer.make(generator.namedParameters(), lr: lrG)
        optimizerD = config.optimizer.make(discriminator.namedParameters(), lr: lrD)
        scheduleG = config.learningRateSchedule(lr: lrG)
        scheduleD = config.learningRateSchedule(lr: lrD)
        ema = EMA(of: generator, decay: Float(config.ema.decay), warmup: config.ema.emaWarmup)
        if let c = communicator, c.size > 1 {
            let t = config.train
            reducerG = GradientReducer(parameters: generator.parameters(), communicator: c,
                                       bucketBytes: t.bucketMB << 20, overlap: t.overlapAllReduce)
            reducerD = GradientReducer(parameters: discriminator.parameters(), communicator: c,
                                       bucketBytes: t.bucketMB << 20, overlap: t.overlapAllReduce)
            if t.syncBatchNorm {
                for (_, m) in generator.namedModules() + discriminator.namedModules() {
                    (m as? BatchNorm2d)?.reducer = c
                }
            }
        } else {
            reducerG = nil
            reducerD = nil
        }
    }

    // MARK: TrainingTask

    public var networks: [(name: String, tensors: [(String, Tensor)])] {
        [("generator", generator.stateDict()), ("discriminator", discriminator.stateDict()),
         ("generator_ema", ema.stateDict())]
    }
    public var optimizers: [(name: String, optimizer: Optimizer)] { [("optimizer_g", optimizerG), ("optimizer_d", optimizerD)] }
    public var counters: [String: Int] {
        get { ["ema_updates": ema.updates, "critic_updates": criticUpdates] }
        set {
            ema.resume(updates: newValue["ema_updates"] ?? 0)
            criticUpdates = newValue["critic_updates"] ?? 0
        }
    }
    public var streams: [(purpose: String, stream: RandomStream)] {
        get { noise.enumerated().map { ($0.offset == 0 ? "noise" : "noise.\($0.offset)", $0.element) } }
        set { noise = newValue.map(\.stream) }
    }
    public var replicatedParameters: [(String, Tensor)] {
        generator.namedParameters().map { ("generator.\($0.0)", $0.1) }
            + discriminator.namedParameters().map { ("discriminator.\($0.0)", $0.1) }
    }
    public var batchesPerStep: Int { settings.gan.nCritic }
    public var summary: String {
        "G \(generator.parameterCount) + D \(discriminator.parameterCount) parameters (\(settings.summary))"
    }
    public var learningRates: [(String, Double)] {
        let s = max(step - 1, 0)
        return [("lr_g", scheduleG.lr(atStep: s)), ("lr_d", scheduleD.lr(atStep: s))]
    }

    public func preview(count: Int) throws -> Tensor {
        var s = RandomStream(key: 0)
        let g = DCGANGenerator(settings.model, stream: &s)
        try ema.copy(into: g)
        return GANTask.sample(g, count: count, seed: UInt64(bitPattern: Int64(config.seed)))
    }

    /// Images `first ..< first + count` of a run seeded with `seed` from `g`, each latent from
    /// the image's own stream (`IndexedNoise`); a conditional G gets `label` for every image, or
    /// the index mod classes.
    public static func sample(_ g: DCGANGenerator, count: Int, seed: UInt64, label: Int? = nil, first: Int = 0) -> Tensor {
        let indices = first..<(first + count)
        var noise = IndexedNoise(seed: seed, indices: indices)
        let z = noise.normal([g.config.zDim])
        return generate(g, z: z, labels: IndexedNoise.labels(indices: indices, classes: g.config.classes, label: label))
    }

    /// G's images for `z` in eval mode (batch-norm running statistics), off the tape.
    static func generate(_ g: DCGANGenerator, z: Tensor, labels: [Int]?) -> Tensor {
        g.eval()
        defer { g.train() }
        return noGrad { g(z, labels: labels) }
    }

    // MARK: The step

    /// `rows` × `width` standard normals, each rank's share of the rows from its own stream.
    func normal(rows: Int, _ width: [Int]) -> Tensor {
        let parts = noise.indices.map { i in Tensor.normal([rows / noise.count] + width, stream: &noise[i]) }
        return parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 0)
    }

    /// Uniform [0, 1) per row, shaped `[rows, 1, 1, 1]` (penalty interpolation weights).
    func uniformPerRow(rows: Int) -> Tensor {
        let parts = noise.indices.map { i in Tensor.uniform([rows / noise.count, 1, 1, 1], stream: &noise[i]) }
        return parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 0)
    }

    public func trainStep(next: () throws -> Batch) throws -> [(String, Double)] {
        let g = settings.gan, loss = g.loss
        generator.train()
        discriminator.train()
        optimizerG.setLearningRate(scheduleG.lr(atStep: step))
        optimizerD.setLearningRate(scheduleD.lr(atStep: step))
        var dLoss = 0.0, dReal = 0.0, dFake = 0.0, gp = 0.0
        var fake = Tensor.zeros([0]), fakeLabels: [Int]? = nil

        for k in 0..<g.nCritic {
            let batch = try next()
            let real = batch.images, b = real.shape[0]
            let labels = settings.model.classes > 0 ? batch.labels : nil
            let z = normal(rows: b, [settings.model.zDim])
            // The last critic iteration's fake batch keeps G's graph for the G update.
            fake = k == g.nCritic - 1 ? generator(z, labels: labels) : noGrad { generator(z, labels: labels) }
            fakeLabels = labels
            OpProfiler.mark("step: G forward")

            let critic = { (x: Tensor) in self.discriminator(x, labels: labels) }
            let outReal = critic(real), outFake = critic(fake.detached())
            var total = loss.discriminatorLoss(real: outReal, fake: outFake)
            if loss == .wganGP {
                let penalty = gradientPenalty(critic: critic, real: real, fake: fake.detached(), epsilon: uniformPerRow(rows: b))
                gp += Double(penalty.item)
                total = total + penalty * Float(g.gpLambda)
            }
            if g.r1Gamma > 0 && criticUpdates % g.r1Every == 0 {
                let r1 = r1Penalty(critic: critic, real: real)
                lastR1 = Double(r1.item)
                total = total + r1 * Float(g.r1Gamma / 2 * Double(g.r1Every))
            }
            dLoss += Double(total.item)
            dReal += Double(noGrad { (loss == .bce ? outReal.sigmoid() : outReal).mean() }.item)
            dFake += Double(noGrad { (loss == .bce ? outFake.sigmoid() : outFake).mean() }.item)
            total.backward()
            OpProfiler.mark("step: D backward")
            try reducerD?.synchronize()
            clip(discriminator.parameters())
            noGrad { optimizerD.step() }
            optimizerD.zeroGrad()
            if loss == .wgan { clampWeights(discriminator.parameters(), to: Float(g.clip)) }
            criticUpdates += 1
            OpProfiler.mark("step: D update")
        }

        // G update: D frozen, so backward computes no D weight gradients.
        discriminator.requiresGrad(false)
        let gLoss = loss.generatorLoss(fake: discriminator(fake, labels: fakeLabels))
        gLoss.backward()
        discriminator.requiresGrad(true)
        OpProfiler.mark("step: G backward")
        try reducerG?.synchronize()
        clip(generator.parameters())
        noGrad { optimizerG.step() }
        optimizerG.zeroGrad()
        OpProfiler.mark("step: G update")
        noGrad { ema.update() }
        OpProfiler.mark("step: EMA")
        step += 1

        let n = Double(g.nCritic)
        var metrics = [("d_loss", dLoss / n), ("g_loss", Double(gLoss.item)), ("d_real", dReal / n), ("d_fake", dFake / n)]
        if loss == .wgan || loss == .wganGP { metrics.append(("wdist", (dReal - dFake) / n)) }
        if loss == .wganGP { metrics.append(("gp", gp / n)) }
        if g.r1Gamma > 0 { metrics.append(("r1", lastR1)) }
        return metrics
    }

    /// `train.clip_grad_norm` on one network's (all-reduced) gradients.
    func clip(_ parameters: [Tensor]) {
        if config.train.clipGradNorm > 0 { _ = clipGradNorm(parameters, maxNorm: Float(config.train.clipGradNorm)) }
    }

    /// WGAN's weight clipping: every critic parameter clamped to [−c, c] in place.
    func clampWeights(_ parameters: [Tensor], to c: Float) {
        for p in parameters {
            let d = p.data
            for i in 0..<p.count { d[i] = Swift.min(Swift.max(d[i], -c), c) }
        }
    }
}
