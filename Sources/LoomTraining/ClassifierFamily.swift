import Foundation
import LoomDistributed
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// The `classifier:` section.
public struct ClassifierSettings: Equatable {
    /// Test images (the dataset's `test` split, else `train`) whose accuracy is logged.
    public var heldOut = 1000
    /// Label smoothing ε of the cross-entropy (0: plain cross-entropy).
    public var labelSmoothing = 0.0

    public init() {}
}

/// Image classifiers (`model.type: classifier`, a small ResNet): the feature network of
/// `loom eval` and of the metrics logged during training (its pooled penultimate layer).
/// `model:` is the network's shape, `classifier:` the held-out accuracy and the loss.
public struct ClassifierFamily: FamilySettings, Equatable {
    public static let modelTypes = ["classifier"]
    public static let sections = ["classifier"]
    public var model = ClassifierConfig()
    public var classifier = ClassifierSettings()

    public init() {}

    public var modelType: String { "classifier" }
    public var sampleShape: [Int] { [model.imageSize, model.imageSize, model.inChannels] }
    /// The dataset must have labels below this count.
    public var classes: Int { model.classes }
    public var modelSize: ModelSize { model.size }
    public var sizeKeys: [String] { ["model.image_size", "model.in_channels", "model.width", "model.blocks"] }
    public var summary: String {
        "ResNet classifier \(model.imageSize)×\(model.imageSize)×\(model.inChannels) → \(model.classes) classes, "
            + "width \(model.width), blocks \(model.blocks), \(model.featureWidth) features"
    }

    public static func read(type: String, model m: ConfigReader, root: ConfigReader, config: RunConfig) throws -> ClassifierFamily {
        var f = ClassifierFamily()
        var c = ClassifierConfig()
        c.imageSize = try m.value("image_size", default: c.imageSize, Valid.within(4...1024))
        c.inChannels = try m.value("in_channels", default: c.inChannels, Valid.within(1...64))
        c.width = try m.value("width", default: c.width, Valid.within(1...1024))
        c.blocks = try m.value("blocks", default: c.blocks) {
            (1...6).contains($0.count) && $0.allSatisfy { (1...32).contains($0) } ? nil : "must be a list of 1 to 6 integers between 1 and 32, found \($0)"
        }
        c.classes = try m.value("num_classes", default: c.classes, Valid.within(2...100_000))
        if c.width << (c.blocks.count - 1) > 8192 {
            throw ConfigError.invalidValue(file: root.file, path: "model.width",
                                           reason: "\(c.width) doubled for each of the \(c.blocks.count - 1) later stages of model.blocks is \(c.width << (c.blocks.count - 1)) channels, more than 8192")
        }
        f.model = c
        f.classifier = try root.section("classifier") { s in
            var v = ClassifierSettings()
            v.heldOut = try s.value("held_out", default: v.heldOut, Valid.within(1...100_000))
            v.labelSmoothing = try s.value("label_smoothing", default: v.labelSmoothing, Valid.fraction)
            return v
        }
        if config.train.gradAccum != 1 {
            throw ConfigError.notForFamily(file: root.file, path: "train.grad_accum", modelType: type)
        }
        return f
    }

    public func makeTask(config: RunConfig, rank: Int, communicator: Communicator?) throws -> TrainingTask {
        ClassifierTask(config: config, settings: self, rank: rank, communicator: communicator,
                       heldOut: try LabelledImages.load(config: config, count: classifier.heldOut))
    }

    public func sample(config: RunConfig, checkpoint: CheckpointState, request: SampleRequest) throws -> (images: Tensor, columns: Int?) {
        throw SampleOptionError("a classifier (model.type classifier) does not generate images; it is the feature network of `loom eval --features`")
    }

    /// The network of a checkpoint (`/model`, or `/ema` of a `loom export`).
    public func network(checkpoint: CheckpointState) throws -> Classifier {
        guard let weights = checkpoint.network("model") ?? checkpoint.network("ema") else {
            throw SampleOptionError("the checkpoint holds no /model or /ema weights")
        }
        var s = RandomStream(key: 0)
        let net = Classifier(model, stream: &s)
        try net.loadStateDict(weights)
        return net
    }
}

/// Images with their labels (a classifier's held-out set, a data set evaluated by `loom eval`).
public struct LabelledImages {
    /// `[N, H, W, C]` in [-1, 1].
    public let images: Tensor
    /// One label per image; nil when the split has none.
    public let labels: [Int]?
    /// The split they come from.
    public let split: String

    /// The first `count` images of `split` of the dataset in `folder` (fewer if it is smaller),
    /// checked against `[H, W, C]` `shape`, with their labels.
    public static func read(folder: String, split: String, count: Int, shape: [Int]) throws -> LabelledImages {
        let data = try ShardedDataset(folder: folder, split: split, expectedShape: shape, expectedKind: .images)
        defer { data.close() }
        let held = try HeldOutImages.read(folder: folder, split: split, count: count, shape: shape)
        return LabelledImages(images: held.images, labels: data.labels.map { Array($0.prefix(held.images.shape[0])) }, split: split)
    }

    /// The first `count` labelled images of the `test` split of `data.path` (else `train`);
    /// nil when `data.path` holds no dataset (`loom bench train`) or the split has no labels.
    public static func load(config: RunConfig, count: Int) throws -> LabelledImages? {
        guard let index = try? DatasetIndex.load(folder: config.data.path) else { return nil }
        let split = index.splits["test"] != nil ? "test" : "train"
        let held = try read(folder: config.data.path, split: split, count: count, shape: config.family.sampleShape)
        return held.labels == nil ? nil : held
    }
}

extension RunConfig {
    /// The classifier family's settings, when this is a classifier config.
    public var classifierFamily: ClassifierFamily? { family as? ClassifierFamily }
}
