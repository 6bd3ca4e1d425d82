import LoomDistributed
import LoomNN
import LoomStorage
import LoomTensor

/// One rank's training state of a model family and its update step. `Trainer` (the loop),
/// `CheckpointKeeper` (save and exact resume), the replica checks and `loom bench train` see a
/// family only through this protocol: a new family is a new task type plus its model files.
public protocol TrainingTask: AnyObject {
    /// Updates made so far (one step = every network of the family updated once).
    var step: Int { get set }

    /// The checkpoint's network groups (`model`, `ema`; `generator`, `discriminator`,
    /// `generator_ema` …), each the live tensors under their state-dict names. Saving reads
    /// them; resuming and the start-up broadcast write into them in place.
    var networks: [(name: String, tensors: [(String, Tensor)])] { get }

    /// The optimizers under their checkpoint group names (`optimizer`; `optimizer_g` …).
    var optimizers: [(name: String, optimizer: Optimizer)] { get }

    /// Integers the checkpoint keeps in `/meta` `counters` (EMA updates …); set on resume.
    var counters: [String: Int] { get set }

    /// This rank's random streams by purpose (noise, labels, dropout …); set on resume.
    var streams: [(purpose: String, stream: RandomStream)] { get set }

    /// The parameters every replica must hold bitwise alike (checked at start, at every
    /// checkpoint and every `train.check_replicas_every` steps).
    var replicatedParameters: [(String, Tensor)] { get }

    /// Batches of `train.batch_size` one step consumes on each rank (gradient accumulation,
    /// critic iterations).
    var batchesPerStep: Int { get }

    /// One line about the networks for the start of the log (parameter counts).
    var summary: String { get }

    /// Strings every checkpoint records in `/meta` `metadata` (latent diffusion: its first stage).
    var checkpointMetadata: [String: String] { get }

    /// One update from the batches `next` hands out (exactly `batchesPerStep` of them).
    /// Returns this rank's named metrics (first the headline loss); the loop averages them
    /// over the ranks for the log and `metrics.jsonl`.
    func trainStep(next: () throws -> Batch) throws -> [(String, Double)]

    /// The learning rates of the step just taken, by name (`lr`; `lr_g`, `lr_d`).
    var learningRates: [(String, Double)] { get }

    /// Preview images `[count, H, W, C]` in [-1, 1] from the averaged (EMA) weights with
    /// fixed noise, for `RUN/samples/step-XXXXXXXX.png`; conditional models show class k in
    /// column k.
    func preview(count: Int) throws -> Tensor
}

extension TrainingTask {
    /// Nothing by default.
    public var checkpointMetadata: [String: String] { [:] }

    /// Copies rank 0's networks (parameters, buffers, EMA shadows) into every rank's, so all
    /// replicas start from the same state.
    public func broadcastNetworks(over communicator: Communicator) throws {
        try Replicas.broadcast(networks.flatMap { $0.tensors.map(\.1) }, over: communicator)
    }
}

/// Assigns `saved` into the live tensors `live` (a network group) after checking that the
/// keys and shapes match exactly; nothing is written when anything differs.
func assign(_ saved: [(String, Tensor)], into live: [(String, Tensor)], group: String) throws {
    do { try assignState(saved, into: live) } catch let error as StateDictError {
        throw CheckpointMismatch.keys(group: group, error: error)
    }
}

/// A checkpoint that does not fit the run's config.
public enum CheckpointMismatch: Error, CustomStringConvertible {
    case keys(group: String, error: StateDictError)
    case missingGroup(String)

    public var description: String {
        switch self {
        case let .keys(group, error): return "checkpoint group /\(group): \(error) (was it written with another config?)"
        case let .missingGroup(name): return "the checkpoint has no /\(name) group (was it written for another model.type?)"
        }
    }
}
