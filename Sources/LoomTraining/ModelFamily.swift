import Foundation
import LoomDistributed
import LoomModels
import LoomStorage
import LoomTensor

/// A model family's typed settings: what it reads from `model:` and from its own sections
/// (`diffusion:`, `gan:` …), and everything built from them (the training task, sampling).
/// `model.type` picks the family; `ModelFamilies.all` lists them.
public protocol FamilySettings {
    /// The `model.type` values this family trains (the first is the default).
    static var modelTypes: [String] { get }
    /// Top-level config sections that belong to this family, besides `model`.
    static var sections: [String] { get }
    /// Reads `model:` (whose `type` is already read) and this family's sections from `root`,
    /// checking ranges and cross-key constraints against the common settings in `config`.
    static func read(type: String, model: ConfigReader, root: ConfigReader, config: RunConfig) throws -> Self

    /// `model.type`.
    var modelType: String { get }
    /// `[H, W, C]` of one training sample.
    var sampleShape: [Int] { get }
    /// Number of classes the model is conditioned on (0: unconditional, labels not needed).
    var classes: Int { get }
    /// One line describing the model for `loom bench train`.
    var summary: String { get }

    /// Parameters and activations of the networks, computed without building them.
    var modelSize: ModelSize { get }
    /// The keys that size the networks (named when the model does not fit in memory).
    var sizeKeys: [String] { get }

    /// Opens the training split of `data.path` and checks it against the model (kind, shape,
    /// labels; default: 8-bit images of `sampleShape`, `TrainingData.openImages`).
    func openTrainingData(config: RunConfig) throws -> ShardedDataset

    /// This rank's training task, with initial weights from the run seed (the caller
    /// broadcasts rank 0's state).
    func makeTask(config: RunConfig, rank: Int, communicator: Communicator?) throws -> TrainingTask

    /// `loom sample`: images `[n, H, W, C]` in [-1, 1] from a checkpoint's averaged weights,
    /// and the number of grid columns to show them in (nil: square).
    func sample(config: RunConfig, checkpoint: CheckpointState, request: SampleRequest) throws -> (images: Tensor, columns: Int?)
}

/// What `loom sample` asks for; options a family does not use must be nil there.
public struct SampleRequest {
    public var count = 64
    public var seed: UInt64 = 0
    /// The run index of the first image: image i (of `count`) is image `first + i` of the run
    /// seeded with `seed`, with its own noise stream and label, so a run split into requests
    /// (distributed sampling, evaluation) gives the same images as one request.
    public var first = 0
    /// Every image of this class (conditional models); nil: the run index mod classes.
    public var label: Int?
    /// Diffusion only: sampler, steps, η, guidance scale (nil: the config's).
    public var sampler: String?
    public var steps: Int?
    public var eta: Double?
    public var guidance: Double?
    /// Latent-variable models: points per row of a walk between two latent vectors (nil: off).
    public var interpolate: Int?
    /// Diffusion editing: the images to edit (`[N, H, W, C]` in [-1, 1]) and their labels.
    public var initImages: Tensor?
    public var initLabels: [Int]?
    /// SDEdit strength in [0, 1] (`--strength`).
    public var strength: Double?
    /// Inpainting mask, 1 = keep (`--mask`).
    public var mask: Tensor?
    /// RePaint resampling count (`--resample`).
    public var resample: Int?
    /// Latent diffusion: receives the sampled latents (`loom sample --raw` saves them too).
    public var latentSink: LatentSink?
    /// The checkpoint file read (named in messages).
    public var checkpointPath = "this checkpoint"

    public init() {}
}

/// Where latent diffusion's `sample` leaves the latents it decoded (scaled, `[N, h, w, c]`).
public final class LatentSink {
    public var latents: Tensor?
    public init() {}
}

/// A `loom sample` option that the checkpoint's family does not take.
public struct SampleOptionError: Error, CustomStringConvertible {
    public var description: String
    public init(_ text: String) { description = text }
}

/// Every model family Loom trains, in the order `model.type` values are listed in messages.
public enum ModelFamilies {
    public static let all: [any FamilySettings.Type] = [DiffusionFamily.self, GANFamily.self, VAEFamily.self, ClassifierFamily.self]

    /// Every `model.type` value.
    public static var modelTypes: [String] { all.flatMap { $0.modelTypes } }

    /// The family of `type`.
    static func family(of type: String) -> (any FamilySettings.Type)? {
        all.first { $0.modelTypes.contains(type) }
    }

    /// The keys another family reads in `model:` and in each of its sections, found by
    /// reading an empty config with it (so they never drift from the readers).
    /// The `model:` keys that `type`'s reader knows (found by running it on an empty config).
    static func modelKeys(of type: String) -> Set<String> {
        guard let family = family(of: type) else { return [] }
        let model = try! ConfigReader(nil, file: "(keys)", path: "model")
        let root = try! ConfigReader(nil, file: "(keys)")
        _ = try? family.read(type: type, model: model, root: root, config: RunConfig())
        return Set(model.readKeys)
    }
}

extension FamilySettings {
    /// Images of `sampleShape`.
    public func openTrainingData(config: RunConfig) throws -> ShardedDataset { try TrainingData.openImages(config) }

    /// Refuses, in one line naming the keys that size the model, a configuration whose training
    /// step would need more memory than this machine has (per rank: weights, gradients, Adam
    /// moments and EMA, plus the activations of `train.batch_size` images), before anything is
    /// allocated. `memory` is the machine's physical memory in bytes.
    func checkFits(file: String, config: RunConfig, memory: Double = Double(ProcessInfo.processInfo.physicalMemory)) throws {
        let size = modelSize, batch = config.train.batchSize
        let bytes = size.trainingBytes(batch: batch)
        guard bytes > memory else { return }
        func gb(_ b: Double) -> String { b >= 1e15 ? String(format: "%.1e", b / 1e9) : String(format: "%.1f", b / 1e9) }
        throw ConfigError.tooLarge(file: file, keys: sizeKeys + ["train.batch_size"],
                                   reason: "make a model that needs about \(gb(bytes)) GB per rank (\(String(format: "%.3g", size.parameters)) parameters "
                                       + "with gradients, Adam moments and EMA, plus activations of \(batch) images), more than this machine's \(gb(memory)) GB: lower them")
    }
}
