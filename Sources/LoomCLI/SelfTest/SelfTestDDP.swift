import ArgumentParser
import Foundation
import LoomDistributed
import LoomNN
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest ddp`: one data-parallel step over N ranks equals one process's step on the
/// concatenated N×B batch (averaged gradients and AdamW update within 1e-5), and the replicas
/// stay bitwise identical over further steps.
struct SelfTestDDP: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ddp")

    @Option(help: "Training steps after the compared first one (replicas checked after each).")
    var steps = 20

    @Option(help: "Samples per rank.")
    var batch = 2

    @Option(help: "Micro-batches per step (gradient accumulation: one backward each, then one synchronize).")
    var microBatches = 1

    @Flag(help: "Start each bucket's all-reduce during backward.")
    var overlap = false

    @Option(help: "Gradient bucket capacity in bytes.")
    var bucketBytes = GradientReducer.defaultBucketBytes

    @Option(help: "Seed of the initial weights and of the dataset.")
    var seed = 11

    @Option(help: "Test the test: 'skip-reduce' leaves the gradients local, 'sum' leaves them summed (not averaged); both must fail.")
    var fault = "none"

    static let tolerance = 1e-5

    func run() throws {
        guard microBatches >= 1, batch % microBatches == 0 else {
            throw ValidationError("--batch \(batch) does not split into \(microBatches) micro-batches")
        }
        try runOnEveryRank { comm in
            let n = comm.size, r = comm.rank, seed = UInt64(self.seed)
            // The data-parallel replica. Ranks other than 0 scramble their copy first, so the
            // comparison below fails unless the broadcast really installs rank 0's weights.
            let replica = DDPTestNet(seed: seed)
            for p in replica.parameters() { for i in 0..<p.count { p.data[i] += Float(r) * 0.25 } }
            try Replicas.broadcast(replica.parameters(), over: comm)
            let reducer = GradientReducer(parameters: replica.parameters(), communicator: comm,
                                          bucketBytes: bucketBytes, overlap: overlap)
            let optimizer = AdamW(replica.namedParameters(), lr: 1e-2)
            // One process's worth of the same training on the whole global batch.
            let reference = DDPTestNet(seed: seed)
            let referenceOptimizer = AdamW(reference.namedParameters(), lr: 1e-2)
            let start = worstRelativeDifference(replica.namedParameters(), reference.namedParameters()) { $0 }
            guard start.value == 0 else {
                throw ValidationError("after the broadcast, \(start.name) differs from rank 0's initial value (\(start.value))")
            }

            let (images, targets) = DDPTestNet.dataset(samples: n * batch, seed: seed)
            let rows = r * batch..<(r + 1) * batch
            let myImages = images.sliced(axis: 0, rows), myTargets = targets.sliced(axis: 0, rows)

            // Step 1, compared with the reference: each rank's loss is a mean over its B
            // samples, so the average over ranks is the reference's mean over N·B samples,
            // and averaging gradients (what the reducer does) gives the reference's gradient.
            let localLoss = replica.lossAndGradients(myImages, myTargets, microBatches: microBatches)
            if fault != "skip-reduce" { try reducer.synchronize() }
            if fault == "sum" {
                for p in replica.parameters() { for i in 0..<p.count { p.grad!.data[i] *= Float(n) } }
            }
            let referenceLoss = reference.lossAndGradients(images, targets)
            let meanLoss = try averageOverRanks(localLoss, comm)
            let lossDifference = abs(meanLoss - referenceLoss) / abs(referenceLoss)
            guard lossDifference <= Self.tolerance else {
                throw ValidationError("mean of the ranks' losses \(meanLoss) differs from the whole-batch loss \(referenceLoss)")
            }
            try Replicas.verify(replica.namedParameters().map { ("grad of \($0.0)", $0.1.grad!) }, over: comm,
                                what: "averaged gradients")
            let gradients = worstRelativeDifference(replica.namedParameters(), reference.namedParameters()) { $0.grad! }
            guard gradients.value <= Self.tolerance else {
                throw ValidationError("averaged gradients differ from the whole-batch gradients: \(gradients.name) by \(gradients.value) (relative)")
            }
            noGrad {
                optimizer.step()
                referenceOptimizer.step()
            }
            let updated = worstRelativeDifference(replica.namedParameters(), reference.namedParameters()) { $0 }
            guard updated.value <= Self.tolerance else {
                throw ValidationError("parameters after the AdamW step differ from the whole-batch step: \(updated.name) by \(updated.value) (relative)")
            }

            // More steps: the replicas must stay bitwise identical, and training must train.
            let firstLoss = meanLoss
            var lastLoss = meanLoss
            for step in 0..<steps {
                optimizer.zeroGrad()
                lastLoss = try averageOverRanks(replica.lossAndGradients(myImages, myTargets, microBatches: microBatches), comm)
                try reducer.synchronize()
                noGrad { optimizer.step() }
                try Replicas.verify(replica.namedParameters(), over: comm, what: "parameters after step \(step + 2)")
                referenceOptimizer.zeroGrad()
                _ = reference.lossAndGradients(images, targets)
                noGrad { referenceOptimizer.step() }
            }
            try Replicas.verify(optimizer.stateTensors(), over: comm, what: "AdamW state")
            guard steps == 0 || lastLoss < firstLoss else {
                throw ValidationError("the loss did not decrease over \(steps) steps: \(firstLoss) → \(lastLoss)")
            }
            // Informational: rounding differences compound over steps (AdamW divides by √v).
            let drift = worstRelativeDifference(replica.namedParameters(), reference.namedParameters()) { $0 }

            let worst = max(gradients.value, updated.value)
            if r == 0 {
                print("ddp: \(n) ranks × \(batch) samples in \(microBatches) micro-batch(es), overlap \(overlap ? "on" : "off"), "
                      + "\(reducer.bucketSizes.count) bucket(s) \(reducer.bucketSizes); step 1 max rel diff: "
                      + "gradients \(scientific(gradients.value)) (\(gradients.name)), "
                      + "parameters \(scientific(updated.value)) (\(updated.name)); loss \(String(format: "%.5f", firstLoss)) → "
                      + "\(String(format: "%.5f", lastLoss)) over \(steps) more steps, drift from the reference \(scientific(drift.value))")
            }
            print("rank \(r): selftest ddp ok (max rel diff \(scientific(worst)))")
        }
    }
}

/// The network of `loom selftest ddp`: conv 3×3 → GroupNorm+SiLU → conv 3×3 stride 2 →
/// flatten → linear, on NHWC 8×8×3 images, with an MSE loss.
final class DDPTestNet: Module {
    let conv1: Conv2d
    let norm: GroupNorm
    let conv2: Conv2d
    let head: Linear

    /// The same weights for the same seed, on every rank.
    init(seed: UInt64) {
        var stream = RandomStream(seed: seed, purpose: .initialization)
        conv1 = Conv2d(3, 8, kernel: 3, padding: 1, stream: &stream)
        norm = GroupNorm(groups: 4, channels: 8)
        conv2 = Conv2d(8, 8, kernel: 3, stride: 2, padding: 1, stream: &stream)
        head = Linear(4 * 4 * 8, 10, stream: &stream)
        super.init()
        // Not the identity affine, so the norm's weight gradient matters downstream.
        Init.uniform(norm.weight!, low: 0.5, high: 1.5, stream: &stream)
        Init.uniform(norm.bias!, low: -0.5, high: 0.5, stream: &stream)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = conv2(norm.withSiLU(conv1(x)))
        return head(h.reshaped([x.shape[0], 4 * 4 * 8]))
    }

    /// The mean loss over the batch, with its gradients accumulated into the parameters; with
    /// several micro-batches, one backward per micro-batch of its loss over `microBatches`
    /// (as the trainer's gradient accumulation does), which adds up to the same gradient.
    func lossAndGradients(_ images: Tensor, _ targets: Tensor, microBatches: Int = 1) -> Double {
        let size = images.shape[0] / microBatches
        var total = 0.0
        for k in 0..<microBatches {
            let rows = k * size..<(k + 1) * size
            let loss = mseLoss(self(images.sliced(axis: 0, rows)), targets.sliced(axis: 0, rows))
            (microBatches == 1 ? loss : loss * (1 / Float(microBatches))).backward()
            total += Double(loss.item)
        }
        return total / Double(microBatches)
    }

    /// The global dataset: the same `samples` images and targets on every rank.
    static func dataset(samples: Int, seed: UInt64) -> (images: Tensor, targets: Tensor) {
        var stream = RandomStream(seed: seed, purpose: .data)
        return (Tensor.normal([samples, 8, 8, 3], stream: &stream), Tensor.normal([samples, 10], stream: &stream))
    }
}

/// The mean of `value` over all ranks.
func averageOverRanks(_ value: Double, _ comm: Communicator) throws -> Double {
    var v = [value]
    try comm.allReduceSum(&v)
    return v[0] / Double(comm.size)
}

/// max |a − b| / max |b| over one tensor pair: relative to the tensor's scale, so values
/// that are zero up to rounding do not blow up the measure.
func relativeDifference(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.shape == b.shape, "relativeDifference: \(a.shape) vs \(b.shape)")
    var difference = 0.0, scale = 0.0
    for i in 0..<a.count {
        difference = max(difference, abs(Double(a.data[i]) - Double(b.data[i])))
        scale = max(scale, abs(Double(b.data[i])))
    }
    return scale == 0 ? difference : difference / scale
}

/// The largest `relativeDifference` over matching named tensors (after `select`), and its name.
func worstRelativeDifference(_ a: [(String, Tensor)], _ b: [(String, Tensor)],
                             _ select: (Tensor) -> Tensor) -> (value: Double, name: String) {
    precondition(a.map(\.0) == b.map(\.0), "worstRelativeDifference: different tensors")
    var worst = (value: 0.0, name: "-")
    for ((name, x), (_, y)) in zip(a, b) {
        let d = relativeDifference(select(x), select(y))
        if d > worst.value || d.isNaN { worst = (d, name) }
    }
    return worst
}

/// `x` as `1.23e-06`.
func scientific(_ x: Double) -> String { String(format: "%.2e", x) }

/// One data-parallel task step against the whole-batch step: each metric's mean over the
/// ranks must be within `tolerance` (relative) of the whole-batch value. Returns the worst
/// relative difference.
func compareStepMetrics(_ mine: [(String, Double)], _ expected: [(String, Double)], step: Int,
                        tolerance: Double, over comm: Communicator) throws -> Double {
    var worst = 0.0
    for ((name, value), (_, want)) in zip(mine, expected) {
        let mean = try averageOverRanks(value, comm)
        let d = abs(mean - want) / max(abs(want), 1e-3)
        worst = max(worst, d)
        guard d <= tolerance else {
            throw ValidationError("step \(step): mean of the ranks' \(name) \(mean) differs from the whole-batch \(name) \(want)")
        }
    }
    return worst
}

/// What the family data-parallel self-tests (`gan-ddp`, `vae-ddp`, `diffusion-ddp`) share:
/// their options, the per-rank and whole-batch configs, and the side-by-side training.
struct WholeBatchCheck: ParsableArguments {
    @Option(help: "Steps compared.")
    var steps = 3

    @Option(help: "Samples per rank.")
    var batch = 4

    @Option(help: "Test the test: 'skip-reduce' trains the replicas without any all-reduce; it must fail.")
    var fault = "none"

    static let tolerance = 1e-5

    /// Whether the replicas train without the all-reduce (`--fault skip-reduce`).
    var skipReduce: Bool { fault == "skip-reduce" }

    /// The config of one rank (`--batch` samples) and of the whole-batch run over `ranks`.
    func configs(_ overrides: [String], ranks: Int) throws -> (local: RunConfig, whole: RunConfig) {
        (try RunConfig.parse(yaml: nil, name: "(selftest)", overrides: overrides + ["train.batch_size=\(batch)"]),
         try RunConfig.parse(yaml: nil, name: "(selftest)", overrides: overrides + ["train.batch_size=\(ranks * batch)"]))
    }

    /// Trains `replica` on this rank's rows and `reference` on the whole global batches that
    /// `globalBatch` makes (one per batch a step asks for, shared by both), comparing the step
    /// metrics every step and every network at the end, then checks the replicas are alike.
    /// Returns the worst relative difference.
    func compare(_ replica: TrainingTask, _ reference: TrainingTask, over comm: Communicator,
                 globalBatch: () -> Batch) throws -> Double {
        let rows = comm.rank * batch..<(comm.rank + 1) * batch
        var worst = 0.0
        for step in 1...steps {
            var globals: [Batch] = []
            let mine = try replica.trainStep {
                let g = globalBatch()
                globals.append(g)
                return Batch(images: g.images.sliced(axis: 0, rows), labels: g.labels.isEmpty ? [] : Array(g.labels[rows]))
            }
            var k = 0
            let expected = try reference.trainStep { defer { k += 1 }; return globals[k] }
            worst = max(worst, try compareStepMetrics(mine, expected, step: step, tolerance: Self.tolerance, over: comm))
        }
        worst = max(worst, try compareNetworks(replica, reference, steps: steps, tolerance: Self.tolerance))
        try Replicas.verify(replica.networks.flatMap { g in g.tensors.map { ("\(g.name).\($0.0)", $0.1) } }, over: comm)
        return worst
    }
}

/// Every network of a data-parallel replica against the whole-batch reference after `steps`
/// steps: the worst relative difference, which must be within `tolerance`.
func compareNetworks(_ replica: TrainingTask, _ reference: TrainingTask, steps: Int, tolerance: Double) throws -> Double {
    var worst = (value: 0.0, name: "-")
    for ((group, a), (_, b)) in zip(replica.networks, reference.networks) {
        let w = worstRelativeDifference(a, b) { $0 }
        if w.value > worst.value || w.value.isNaN { worst = (w.value, "\(group).\(w.name)") }
    }
    guard worst.value <= tolerance else {
        throw ValidationError("after \(steps) steps \(worst.name) differs from the whole-batch run by \(scientific(worst.value)) (relative)")
    }
    return worst.value
}
