import Foundation
import LoomMetrics
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor

/// A trained classifier used as the metrics' feature network (the role Inception-v3 plays in
/// FID): its pooled penultimate activations are the features, its logits feed the
/// Inception-Score analogue and the accuracy on conditioned labels.
public final class FeatureNetwork {
    /// The checkpoint it came from (as given).
    public let path: String
    public let family: ClassifierFamily
    let network: Classifier
    /// `xxh64:` + 16 hex digits over the weights and buffers (the key of cached reference statistics).
    public let checksum: String

    /// Loads the classifier of a checkpoint (a file, `latest`, a run folder or an export).
    public init(checkpoint path: String) throws {
        let state: CheckpointState
        do { state = try CheckpointStore.read(path) } catch {
            throw EvaluationError.features(path: path, reason: "\(error)")
        }
        let config: RunConfig
        do { config = try RunConfig.parse(yaml: state.configYAML, name: "\(path) (/meta/config)") } catch {
            throw EvaluationError.features(path: path, reason: "\(error)")
        }
        guard let family = config.classifierFamily else {
            throw EvaluationError.features(path: path, reason: "is a model.type \(config.family.modelType) checkpoint, not a classifier "
                                           + "(train one with configs/classifier-fashion.yaml)")
        }
        self.path = path
        self.family = family
        network = try family.network(checkpoint: state)
        network.eval()
        checksum = "xxh64:" + XXH64.hex(CheckpointFile.checksum(of: network.stateDict()))
    }

    /// `[H, W, C]` of the images it takes.
    public var imageShape: [Int] { family.sampleShape }
    /// Width of the features.
    public var featureWidth: Int { family.model.featureWidth }
    /// Number of classes of its logits.
    public var classes: Int { family.model.classes }

    /// Features `[N, featureWidth]` followed by logits `[N, classes]` per row, as one float
    /// tensor `[N, featureWidth + classes]` (what distributed evaluation gathers).
    public func outputs(_ images: Tensor, batch: Int = 250, progress: ProgressReporter? = nil) throws -> Tensor {
        guard Array(images.shape.dropFirst()) == imageShape else {
            throw EvaluationError.shape(what: "the images", found: Array(images.shape.dropFirst()), expected: imageShape, features: path)
        }
        let n = images.shape[0], width = featureWidth + classes
        let out = Tensor(uninitialized: [n, width])
        for lo in stride(from: 0, to: n, by: batch) {
            let hi = min(n, lo + batch)
            noGrad {
                let f = network.features(images.sliced(axis: 0, lo..<hi))
                let l = network.logits(features: f)
                for i in 0..<(hi - lo) {
                    (out.data + (lo + i) * width).update(from: f.data + i * featureWidth, count: featureWidth)
                    (out.data + (lo + i) * width + featureWidth).update(from: l.data + i * classes, count: classes)
                }
            }
            progress?.advance(by: hi - lo)
        }
        return out
    }

    /// Splits `outputs` rows into (features, logits) matrices in double precision.
    public func split(_ outputs: Tensor) -> (features: Matrix, logits: Matrix) {
        let n = outputs.shape[0], width = featureWidth + classes
        var f = Matrix(zeros: n, featureWidth), l = Matrix(zeros: n, classes)
        for i in 0..<n {
            let row = outputs.data + i * width
            for j in 0..<featureWidth { f.values[i * featureWidth + j] = Double(row[j]) }
            for j in 0..<classes { l.values[i * classes + j] = Double(row[featureWidth + j]) }
        }
        return (f, l)
    }
}

/// A `loom eval` input that does not fit: one line naming the file and what was expected.
public enum EvaluationError: Error, CustomStringConvertible {
    case features(path: String, reason: String)
    case shape(what: String, found: [Int], expected: [Int], features: String)
    case input(path: String, reason: String)

    public var description: String {
        func s(_ shape: [Int]) -> String { shape.map(String.init).joined(separator: "×") }
        switch self {
        case let .features(path, reason): return "--features \(path): \(reason)"
        case let .shape(what, found, expected, features):
            return "\(what) are \(s(found)) (H×W×C) but the feature network \(features) takes \(s(expected))"
        case let .input(path, reason): return "\(path): \(reason)"
        }
    }
}
