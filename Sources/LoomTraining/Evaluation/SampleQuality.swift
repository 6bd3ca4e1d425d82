import Foundation
import LoomMetrics

/// How the metrics are computed (the `loom eval` options and their defaults).
public struct QualitySettings: Equatable, Sendable {
    /// KID: subsets and rows per subset (torch-fidelity: 100 × 1000).
    public var kidSubsets = 100
    public var kidSubsetSize = 1000
    /// k of the precision/recall balls (Kynkäänniemi et al.: 3).
    public var k = 3
    /// k of the density/coverage balls (Naeem et al.: 5).
    public var densityK = 5
    /// Inception-Score splits (torch-fidelity: 10).
    public var splits = 10
    /// Seed of the KID subsets.
    public var seed: UInt64 = 0

    public init() {}
}

/// Every metric of one sample set against a reference, as `loom eval` prints them and the
/// trainer logs them.
public struct SampleQuality: Equatable, Sendable {
    public var count: Int
    public var referenceCount: Int
    /// Fréchet distance of the features.
    public var fd: Double
    /// KID: mean over subsets, standard deviation and standard error of the mean.
    public var kid: Double
    public var kidStd: Double
    public var kidStandardError: Double
    public var precision: Double
    public var recall: Double
    public var density: Double
    public var coverage: Double
    /// The Inception-Score analogue with the feature network's classifier (mean, std over splits).
    public var inceptionScore: Double
    public var inceptionScoreStd: Double
    /// The classifier's accuracy on the labels the samples were conditioned on (nil: none).
    public var accuracy: Double?

    /// The metrics of samples with `features`/`logits` (and conditioning `labels`) against `reference`.
    public static func evaluate(features: Matrix, logits: Matrix, labels: [Int]?, reference: ReferenceSet,
                                settings: QualitySettings = QualitySettings()) throws -> SampleQuality {
        let stats = try FeatureStatistics(features: features)
        let fd = try FrechetDistance.distance(stats, reference.statistics)
        let kid = try KernelInceptionDistance.compute(real: reference.features, fake: features, subsets: settings.kidSubsets,
                                                      subsetSize: settings.kidSubsetSize, seed: settings.seed)
        let manifold = try ManifoldMetrics.compute(real: reference.features, fake: features, k: settings.k, densityK: settings.densityK)
        let splits = min(settings.splits, features.rows)
        let score = try ClassifierScores.inceptionScore(logits: logits, splits: splits)
        let accuracy = try labels.map { try ClassifierScores.accuracy(logits: logits, labels: $0) }
        return SampleQuality(count: features.rows, referenceCount: reference.features.rows, fd: fd,
                             kid: kid.mean, kidStd: kid.std, kidStandardError: kid.standardError,
                             precision: manifold.precision, recall: manifold.recall, density: manifold.density,
                             coverage: manifold.coverage, inceptionScore: score.mean, inceptionScoreStd: score.std, accuracy: accuracy)
    }

    /// The metrics by name, as `metrics.jsonl`, TensorBoard and `--json` carry them.
    public var named: [(String, Double)] {
        var out: [(String, Double)] = [("fd", fd), ("kid", kid), ("kid_std", kidStd), ("kid_se", kidStandardError),
                                       ("precision", precision), ("recall", recall), ("density", density), ("coverage", coverage),
                                       ("is", inceptionScore), ("is_std", inceptionScoreStd)]
        if let accuracy { out.append(("accuracy", accuracy)) }
        return out
    }

    /// One line for the terminal: `FD 12.34  KID 0.0123 ± 0.0004  precision 0.712 …`.
    public var line: String {
        var text = String(format: "FD %.3f  KID %.5f ± %.5f  precision %.3f  recall %.3f  density %.3f  coverage %.3f  IS %.3f ± %.3f",
                          fd, kid, kidStd, precision, recall, density, coverage, inceptionScore, inceptionScoreStd)
        if let accuracy { text += String(format: "  accuracy %.4f", accuracy) }
        return text
    }
}
