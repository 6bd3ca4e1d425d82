import Foundation
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// One rank's classifier training state and its update step: the ResNet, its optimizer and
/// the fixed held-out images whose accuracy is logged. A step: cross-entropy on the batch,
/// backward, all-reduce, clip, update. There is no EMA; `/model` is the feature network.
public final class ClassifierTask: TrainingTask {
    public let config: RunConfig
    public let settings: ClassifierFamily
    public let model: Classifier
    public let optimizer: Optimizer
    let schedule: LearningRateSchedule
    let reducer: GradientReducer?
    /// Unused by the step (no randomness of its own); kept so the checkpoint has a stream.
    var noise: RandomStream
    public var step = 0
    /// The held-out images and labels (nil: no test accuracy, e.g. `loom bench train`).
    public let heldOut: LabelledImages?
    /// The step this process's current log window started at (see `heldOutAccuracy`).
    var windowStart: Int?

    /// Builds the network from the run seed (the caller broadcasts rank 0's state).
    public init(config: RunConfig, settings: ClassifierFamily, rank: Int, communicator: Communicator?, heldOut: LabelledImages? = nil) {
        self.config = config
        self.settings = settings
        self.heldOut = heldOut
        let seed = UInt64(bitPattern: Int64(config.seed))
        var initStream = RandomStream(seed: seed, purpose: .initialization)
        model = Classifier(settings.model, stream: &initStream)
        noise = RandomStream(seed: seed, rank: rank, purpose: .noise)
        optimizer = config.optimizer.make(model.namedParameters())
        schedule = config.learningRateSchedule(lr: config.optimizer.lr)
        if let c = communicator, c.size > 1 {
            let t = config.train
            reducer = GradientReducer(parameters: model.parameters(), communicator: c,
                                      bucketBytes: t.bucketMB << 20, overlap: t.overlapAllReduce)
            if t.syncBatchNorm { for (_, m) in model.namedModules() { (m as? BatchNorm2d)?.reducer = c } }
        } else {
            reducer = nil
        }
    }

    // MARK: TrainingTask

    public var networks: [(name: String, tensors: [(String, Tensor)])] { [("model", model.stateDict())] }
    public var optimizers: [(name: String, optimizer: Optimizer)] { [("optimizer", optimizer)] }
    public var counters: [String: Int] { get { [:] } set {} }
    public var streams: [(purpose: String, stream: RandomStream)] {
        get { [("noise", noise)] }
        set { noise = newValue[0].stream }
    }
    public var replicatedParameters: [(String, Tensor)] { model.namedParameters() }
    public var batchesPerStep: Int { 1 }
    public var summary: String {
        "\(model.parameterCount) parameters (\(settings.summary))"
            + (heldOut.map { "; accuracy on \($0.images.shape[0]) held-out images of the \($0.split) split" } ?? "")
    }
    public var learningRates: [(String, Double)] { [("lr", schedule.lr(atStep: max(step - 1, 0)))] }

    /// The first held-out images, one class per column where the classes fit the count.
    public func preview(count: Int) throws -> Tensor {
        guard let h = heldOut else { return Tensor.zeros([count] + settings.sampleShape) }
        let n = min(count, h.images.shape[0])
        return h.images.sliced(axis: 0, 0..<n)
    }

    public func trainStep(next: () throws -> Batch) throws -> [(String, Double)] {
        let batch = try next()
        if windowStart == nil { windowStart = step }
        model.train()
        optimizer.setLearningRate(schedule.lr(atStep: step))
        let logits = model(batch.images)
        let loss = crossEntropyLoss(logits, batch.labels, labelSmoothing: Float(settings.classifier.labelSmoothing))
        let accuracy = Self.accuracy(logits: logits, labels: batch.labels)
        loss.backward()
        try reducer?.synchronize()
        if config.train.clipGradNorm > 0 { _ = clipGradNorm(model.parameters(), maxNorm: Float(config.train.clipGradNorm)) }
        noGrad { optimizer.step() }
        optimizer.zeroGrad()
        step += 1
        var metrics = [("loss", Double(loss.item)), ("accuracy", accuracy)]
        if let h = heldOut { metrics.append(("test_accuracy", heldOutAccuracy(h))) }
        return metrics
    }

    /// The fraction of rows whose largest logit is their label.
    public static func accuracy(logits: Tensor, labels: [Int]) -> Double {
        let n = logits.shape[0], k = logits.shape[1]
        var right = 0
        for i in 0..<n {
            let row = logits.data + i * k
            var best = 0
            for j in 1..<k where row[j] > row[best] { best = j }
            if best == labels[i] { right += 1 }
        }
        return n > 0 ? Double(right) / Double(n) : 0
    }

    /// The held-out accuracy (eval mode: BN running statistics), measured once per log window
    /// on the weights of the log step and reported as accuracy × (steps in the window) there
    /// and 0 on the other steps, so the loop's window mean is the accuracy (as the VAEs' PSNR).
    func heldOutAccuracy(_ h: LabelledImages) -> Double {
        guard step % config.logging.every == 0 || step == config.train.maxSteps, let start = windowStart,
              let labels = h.labels else { return 0 }
        windowStart = step
        model.eval()
        defer { model.train() }
        let n = h.images.shape[0], chunk = 500
        var right = 0.0
        for lo in stride(from: 0, to: n, by: chunk) {
            let hi = min(n, lo + chunk)
            let logits = noGrad { model(h.images.sliced(axis: 0, lo..<hi)) }
            right += Self.accuracy(logits: logits, labels: Array(labels[lo..<hi])) * Double(hi - lo)
        }
        return right / Double(n) * Double(step - start)
    }
}
