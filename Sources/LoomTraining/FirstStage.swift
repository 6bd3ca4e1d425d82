import Foundation
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// `first_stage:` of a diffusion config: the frozen autoencoder of latent diffusion.
public struct FirstStageSettings: Equatable {
    /// `first_stage.checkpoint`: a KL autoencoder's checkpoint (a file, a `latest` pointer, a
    /// run folder or an export).
    public var checkpoint = ""

    public init() {}
}

/// A trained KL autoencoder loaded as latent diffusion's first stage: it encodes images into
/// the latents the denoiser models and decodes the denoiser's samples back into images.
public final class FirstStage {
    /// The checkpoint file the weights came from (the given path resolved to a file).
    public let file: String
    /// XXH64 of the weights (`xxh64:` + 16 hex digits; the checkpoint group's `checksum`).
    public let checksum: String
    /// The autoencoder's run config, and its family settings.
    public let config: RunConfig
    public let family: VAEFamily
    /// The network (eval mode).
    public let model: any VariationalAutoencoder

    /// `[H, W, C]` of the images it encodes.
    public var imageShape: [Int] { family.sampleShape }
    /// `[h, w, c]` of one latent.
    public var latentShape: [Int] { model.latentShape }

    init(file: String, checksum: String, config: RunConfig, family: VAEFamily, model: any VariationalAutoencoder) {
        (self.file, self.checksum, self.config, self.family, self.model) = (file, checksum, config, family, model)
        model.eval()
    }

    /// The weights' checksum as `loom encode` records it.
    public static func checksum(of weights: [(String, Tensor)]) -> String {
        "xxh64:" + XXH64.hex(CheckpointFile.checksum(of: weights))
    }

    /// Loads the KL autoencoder `path` names (`CheckpointStore.resolve`); `role` names the
    /// option or key it came from in errors (`first_stage.checkpoint`, `AE_CKPT`).
    public static func load(_ path: String, role: String) throws -> FirstStage {
        let file: String, state: CheckpointState
        do {
            file = try CheckpointStore.resolve(path)
            state = try CheckpointFile.read(file)
        } catch let error as StorageError {
            throw FirstStageError.unreadable(role: role, path: path, reason: "\(error)")
        }
        let config = try RunConfig.parse(yaml: state.configYAML, name: "\(file) (/meta/config)")
        guard let family = config.vaeFamily, family.type == .klAutoencoder else {
            throw FirstStageError.notAutoencoder(role: role, path: file, modelType: config.family.modelType)
        }
        guard let weights = state.network("model") ?? state.network("ema") else {
            throw FirstStageError.unreadable(role: role, path: file, reason: "the checkpoint holds no /model or /ema weights")
        }
        var stream = RandomStream(key: 0)
        let model = family.makeModel(stream: &stream)
        try model.loadStateDict(weights)
        return FirstStage(file: file, checksum: checksum(of: weights), config: config, family: family, model: model)
    }

    /// The posterior q(z|x) of images `[B, H, W, C]` in [-1, 1]: its mean and standard
    /// deviation, each `[B, h, w, c]` (off the tape).
    public func posterior(_ images: Tensor) -> (mean: Tensor, std: Tensor) {
        noGrad {
            let q = model.encode(images)
            return (q.mean, q.std)
        }
    }

    /// Images `[B, H, W, C]` in [-1, 1] from latents `[B, h, w, c]` that were multiplied by
    /// `scale` (the denoiser's space): the decoder runs on latents / scale.
    public func decode(scaled latents: Tensor, scale: Float) -> Tensor {
        noGrad { model.decode(latents * (1 / scale)).clamped(min: -1, max: 1) }
    }

    /// The posterior means of `images` times `scale`: the denoiser's space (SDEdit's start).
    public func encode(_ images: Tensor, scale: Float) -> Tensor {
        noGrad { posterior(images).mean * scale }
    }
}

/// The latent space a diffusion model trains and samples in: a first stage and the scale
/// that gives its latents unit variance.
public struct LatentSpace {
    /// The autoencoder.
    public let stage: FirstStage
    /// `latents.scale_factor` of the data set (1 / std).
    public let scale: Float

    public init(stage: FirstStage, scale: Float) {
        self.stage = stage
        self.scale = scale
    }

    /// What a diffusion checkpoint records so that sampling needs nothing else.
    public var metadata: [String: String] {
        [FirstStageKeys.checkpoint: stage.file, FirstStageKeys.checksum: stage.checksum, FirstStageKeys.scale: "\(Double(scale))"]
    }

    /// The latent space a diffusion checkpoint recorded: its first stage, loaded from the
    /// recorded path and checked against the recorded checksum.
    public static func recorded(in metadata: [String: String], checkpoint: String) throws -> LatentSpace {
        guard let path = metadata[FirstStageKeys.checkpoint], let checksum = metadata[FirstStageKeys.checksum],
              let text = metadata[FirstStageKeys.scale], let scale = Double(text), scale.isFinite, scale > 0 else {
            throw FirstStageError.notRecorded(checkpoint: checkpoint)
        }
        let stage = try FirstStage.load(path, role: "the first stage recorded in \(checkpoint)")
        guard stage.checksum == checksum else {
            throw FirstStageError.mismatch(recordedIn: checkpoint, recordedPath: path, recordedChecksum: checksum,
                                           role: "the file there now", path: stage.file, checksum: stage.checksum,
                                           fix: "restore the autoencoder this model was trained with")
        }
        return LatentSpace(stage: stage, scale: Float(scale))
    }
}

/// The `/meta` `metadata` keys of a latent diffusion checkpoint.
public enum FirstStageKeys {
    public static let checkpoint = "first_stage.checkpoint"
    public static let checksum = "first_stage.checksum"
    public static let scale = "first_stage.scale_factor"
}

/// A first stage that cannot be used: each a one-line message naming the files involved.
public enum FirstStageError: Error, CustomStringConvertible {
    case unreadable(role: String, path: String, reason: String)
    case notAutoencoder(role: String, path: String, modelType: String)
    case notRecorded(checkpoint: String)
    /// The autoencoder recorded in `recordedIn` is not the one found at `path`.
    case mismatch(recordedIn: String, recordedPath: String, recordedChecksum: String, role: String, path: String, checksum: String, fix: String)
    /// A latent data set and a config that do not belong together.
    case dataMismatch(String)

    public var description: String {
        switch self {
        case let .unreadable(role, path, reason):
            return reason.hasPrefix(path) ? "\(role) \(reason)" : "\(role) \(path): \(reason)"
        case let .notAutoencoder(role, path, type):
            return "\(role) \(path) is a model.type \(type) checkpoint; the first stage must be a kl_autoencoder"
        case let .notRecorded(checkpoint):
            return "\(checkpoint) has a first_stage config but records no first stage (first_stage.checkpoint, .checksum, .scale_factor in /meta metadata)"
        case let .mismatch(recordedIn, recordedPath, recordedChecksum, role, path, checksum, fix):
            return "\(recordedIn) was made with the autoencoder \(recordedPath) (weights \(recordedChecksum)), but \(role) \(path) has weights \(checksum): \(fix)"
        case let .dataMismatch(text):
            return text
        }
    }
}

extension LatentSpace {
    /// The latent space of a run: its first stage and the scale factor of its data set (1
    /// when `data.path` holds no data set: `loom bench train` on synthetic latents). The
    /// data set itself is checked by `TrainingData.openLatents` before training.
    static func forTraining(config: RunConfig, family: DiffusionFamily, firstStage: FirstStageSettings) throws -> LatentSpace {
        let stage = try FirstStage.load(firstStage.checkpoint, role: "first_stage.checkpoint")
        guard stage.latentShape == family.sampleShape else {
            throw FirstStageError.dataMismatch("first_stage.checkpoint \(stage.file) makes latents \(stage.latentShape) ([h, w, c]), but model.image_size "
                + "\(family.sampleShape[0]) and model.in_channels \(family.sampleShape[2]) make the denoiser's input \(family.sampleShape): "
                + "set model.image_size: \(stage.latentShape[0]) and model.in_channels: \(stage.latentShape[2])")
        }
        let record = (try? DatasetIndex.load(folder: config.data.path))?.latents
        return LatentSpace(stage: stage, scale: Float(record?.scaleFactor ?? 1))
    }
}
