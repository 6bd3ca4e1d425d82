import Foundation
import LoomStorage

/// Opening a run's training split and checking it against the model: images for pixel-space
/// models, latents (with their autoencoder) for latent diffusion. Each mismatch is one line
/// naming the data set and the config key.
public enum TrainingData {
    /// The `train` split of `data.path` as 8-bit images of the model's `[H, W, C]`.
    public static func openImages(_ config: RunConfig) throws -> ShardedDataset {
        let family = config.family, folder = config.data.path
        if let index = try? DatasetIndex.load(folder: folder), index.kind == .latents {
            var text = "data.path \(folder) is a latent data set (\(index.latents.map { "encoded by \($0.autoencoder)" } ?? "kind latents")), "
                + "but this config trains model.type \(family.modelType) on pixels"
            if family is DiffusionFamily, let r = index.latents {
                text += " (it has no first_stage.checkpoint): set first_stage.checkpoint: \(r.autoencoder) and size the denoiser for its latents "
                    + "\(r.latentShape) (model.image_size \(r.latentShape[0]), model.in_channels \(r.latentShape[2])), or point data.path at the images \(r.images)"
            } else {
                text += ": point data.path at an image data set" + (index.latents.map { " (these latents were encoded from \($0.images))" } ?? "")
            }
            throw FirstStageError.dataMismatch(text)
        }
        let dataset = try ShardedDataset(folder: folder, split: "train", expectedShape: family.sampleShape, expectedKind: .images)
        try checkLabels(dataset, config: config)
        return dataset
    }

    /// The `train` split of `data.path` as latents encoded by `firstStage`, for a diffusion
    /// model of `family` (whose `[H, W, C]` is the latent shape). Returns the set and its record.
    public static func openLatents(_ config: RunConfig, family: DiffusionFamily, firstStage: FirstStageSettings) throws -> (ShardedDataset, LatentRecord) {
        let folder = config.data.path
        let index = try DatasetIndex.load(folder: folder)
        guard index.kind == .latents else {
            throw FirstStageError.dataMismatch("data.path \(folder) holds \(index.kind.rawValue) \(index.sampleShape), but first_stage.checkpoint "
                + "is set (latent diffusion trains on latents): encode them first with `loom encode \(firstStage.checkpoint) \(folder) OUT` and set data.path to OUT")
        }
        guard let record = index.latents else {
            throw FirstStageError.dataMismatch("\(folder)/\(DatasetIndex.fileName): a latent data set without the `latents` record `loom encode` writes "
                + "(autoencoder, checksum, scale factor): re-encode it with `loom encode`")
        }
        let stage = try FirstStage.load(firstStage.checkpoint, role: "first_stage.checkpoint")
        guard stage.checksum == record.autoencoderChecksum else {
            throw FirstStageError.mismatch(recordedIn: "data.path \(folder)", recordedPath: record.autoencoder, recordedChecksum: record.autoencoderChecksum,
                                           role: "first_stage.checkpoint", path: stage.file, checksum: stage.checksum,
                                           fix: "point first_stage.checkpoint at the autoencoder that encoded it, or re-encode with `loom encode \(firstStage.checkpoint) \(record.images) \(folder) --overwrite`")
        }
        guard family.sampleShape == record.latentShape else {
            throw FirstStageError.dataMismatch("data.path \(folder) holds latents \(record.latentShape) ([h, w, c]) of \(record.autoencoder), but model.image_size "
                + "\(family.sampleShape[0]) and model.in_channels \(family.sampleShape[2]) make the denoiser's input \(family.sampleShape): "
                + "set model.image_size: \(record.latentShape[0]) and model.in_channels: \(record.latentShape[2])")
        }
        let dataset = try ShardedDataset(folder: folder, split: "train", expectedShape: record.storedShape, expectedKind: .latents)
        try checkLabels(dataset, config: config)
        return (dataset, record)
    }

    /// A conditional model needs labels, all below its class count.
    static func checkLabels(_ dataset: ShardedDataset, config: RunConfig) throws {
        let classes = config.family.classes
        if classes > 0, let labels = dataset.labels, let top = labels.max(), top >= classes {
            throw ConfigError.invalidValue(file: "config", path: "model.num_classes",
                                           reason: "is \(classes) but the dataset \(config.data.path) has label \(top)")
        }
        if classes > 0 && dataset.labels == nil {
            throw ConfigError.invalidValue(file: "config", path: "model.num_classes",
                                           reason: "is \(classes) (a conditional model) but the dataset \(config.data.path) has no labels")
        }
    }
}
