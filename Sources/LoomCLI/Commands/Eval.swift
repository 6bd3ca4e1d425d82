import ArgumentParser
import Foundation
import LoomMetrics
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom eval SAMPLES --reference DATASET --features CKPT`: FD, KID, precision/recall,
/// density/coverage, the Inception-Score analogue and the accuracy on conditioned labels of a
/// sample set, on the features of a trained classifier; `loom eval --stats A.npz B.npz`: the
/// Fréchet distance of two pytorch-fid / guided-diffusion statistic files.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample-quality metrics (FD, KID, precision/recall, density/coverage, IS, accuracy) on a classifier's features.",
        discussion: "SAMPLES: an HDF5 file from `loom sample --raw` (/samples, /labels), a dataset folder (one split, with labels), "
            + "a folder of PNG files or one PNG grid. The reference statistics are cached in DATASET/.loom-eval/, keyed by the "
            + "feature network's checksum. `loom eval --stats A.npz B.npz` compares two statistic files (mu, sigma).")

    @Argument(help: "SAMPLES (or, with --stats, the two .npz files).")
    var paths: [String] = []

    @Flag(help: "Fréchet distance between two .npz statistic files (pytorch-fid / guided-diffusion format: mu, sigma).")
    var stats = false

    @Option(help: "Reference dataset folder (from `loom prepare`).")
    var reference: String?

    @Option(name: .customLong("reference-split"), help: "Split of the reference dataset.")
    var referenceSplit = "train"

    @Option(name: .customLong("reference-n"), help: "Reference images (the first ones of the split).")
    var referenceN = 10_000

    @Option(help: "Feature network: a classifier checkpoint (model.type classifier).")
    var features: String?

    @Option(help: "Split of SAMPLES when it is a dataset folder (default: test, else train).")
    var split: String?

    @Option(help: "Use only the first N samples.")
    var limit: Int?

    @Option(help: "Blur the samples with a Gaussian of this σ in pixels first (a degraded reference point).")
    var blur: Double?

    @Option(name: .customLong("save-stats"), help: "Write the samples' feature statistics (mu, sigma) to this .npz file.")
    var saveStats: String?

    @Option(name: .customLong("kid-subsets"), help: "KID: number of random subsets.")
    var kidSubsets = 100

    @Option(name: .customLong("kid-subset-size"), help: "KID: samples per subset (capped at the smaller set).")
    var kidSubsetSize = 1000

    @Option(help: "Precision/recall: k of the nearest-neighbour balls.")
    var k = 3

    @Option(name: .customLong("density-k"), help: "Density/coverage: k of the nearest-neighbour balls.")
    var densityK = 5

    @Option(help: "Images per feature-network batch.")
    var batch = 250

    @Option(help: "Threads.")
    var threads = 1

    @Flag(help: "Print the results as one JSON object.")
    var json = false

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func validate() throws {
        if stats {
            guard paths.count == 2 else { throw ValidationError("--stats takes two .npz files, found \(paths.count)") }
            if let option = [("--features", features != nil), ("--reference", reference != nil), ("--save-stats", saveStats != nil),
                             ("--blur", blur != nil)].first(where: { $0.1 }) {
                throw ValidationError("\(option.0) does not apply to --stats (it compares two statistic files)")
            }
            return
        }
        guard paths.count == 1 else { throw ValidationError("give one SAMPLES file or folder, found \(paths.count)") }
        guard features != nil else { throw ValidationError("--features CLASSIFIER_CKPT is required (the feature network)") }
        guard reference != nil || saveStats != nil else { throw ValidationError("give --reference DATASET (or only --save-stats OUT.npz)") }
        try OptionError.check("--reference-n", referenceN, in: 2...1_000_000)
        if let limit { try OptionError.check("--limit", limit, in: 2...10_000_000) }
        if let blur { try OptionError.check("--blur", blur, in: 0.01...100) }
        try OptionError.check("--kid-subsets", kidSubsets, in: 1...100_000)
        try OptionError.check("--kid-subset-size", kidSubsetSize, in: 2...1_000_000)
        try OptionError.check("--k", k, in: 1...1000)
        try OptionError.check("--density-k", densityK, in: 1...1000)
        try OptionError.check("--batch", batch, in: 1...100_000)
        try OptionError.check("--threads", threads, in: 1...256)
    }

    func run() throws {
        do {
            Parallel.setThreads(threads)
            if stats { try compareStatistics(); return }
            try evaluate()
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("loom eval: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// `--stats A B`: FD of two statistic files.
    func compareStatistics() throws {
        let a = try Self.readStatistics(paths[0]), b = try Self.readStatistics(paths[1])
        guard a.dimension == b.dimension else {
            throw EvaluationError.input(path: paths[1], reason: "has \(b.dimension)-wide statistics but \(paths[0]) has \(a.dimension)-wide ones")
        }
        let fd = try FrechetDistance.distance(a, b)
        if json {
            print(try Self.jsonText(["fd": fd, "a": paths[0], "b": paths[1], "dimension": a.dimension]))
        } else {
            print(String(format: "FD %.6f  (%@ vs %@, %d features)", fd, paths[0], paths[1], a.dimension))
        }
    }

    /// `mu` and `sigma` of a pytorch-fid / guided-diffusion `.npz` file.
    static func readStatistics(_ path: String) throws -> FeatureStatistics {
        let arrays = try NPZ.read(path: path)
        for key in ["mu", "sigma"] where arrays[key] == nil {
            throw EvaluationError.input(path: path, reason: "has no '\(key)' array (statistic files hold mu and sigma; it has \(arrays.keys.sorted().joined(separator: ", ")))")
        }
        let mu = arrays["mu"]!, sigma = arrays["sigma"]!
        guard mu.shape.count == 1, sigma.shape == [mu.shape[0], mu.shape[0]] else {
            throw EvaluationError.input(path: path, reason: "mu is \(mu.shape) and sigma \(sigma.shape): expected [d] and [d, d]")
        }
        do { return try FeatureStatistics(mean: mu.values, covariance: Matrix(rows: mu.shape[0], columns: mu.shape[0], values: sigma.values)) } catch {
            throw EvaluationError.input(path: path, reason: "\(error)")
        }
    }

    /// SAMPLES against the reference.
    func evaluate() throws {
        let network = try FeatureNetwork(checkpoint: features!)
        let shape = network.imageShape
        if let reference {
            let index = try DatasetIndex.load(folder: reference)
            guard index.sampleShape == shape else {
                throw EvaluationError.input(path: reference, reason: "holds \(index.sampleShape.map(String.init).joined(separator: "×")) images but the feature network takes \(shape.map(String.init).joined(separator: "×"))")
            }
            guard index.splits[referenceSplit] != nil else {
                throw EvaluationError.input(path: reference, reason: "has no split '\(referenceSplit)' (it has \(index.splits.keys.sorted().joined(separator: ", ")))")
            }
        }
        var (images, labels, description) = try EvalInputs.images(paths[0], shape: shape, split: split, limit: limit)
        if let blur {
            images = GaussianBlur.apply(images, sigma: blur)
            description += String(format: ", blurred (σ = %g px)", blur)
        }
        let n = images.shape[0]
        guard n >= max(k, densityK) + 1 else {
            throw EvaluationError.input(path: paths[0], reason: "holds \(n) images; the metrics need at least \(max(k, densityK) + 1)")
        }
        let progress = ProgressReporter(label: "features", total: n, enabled: !quiet)
        let (sampleFeatures, logits) = network.split(try network.outputs(images, batch: batch, progress: progress))
        progress.finish()
        if let saveStats {
            let s = try FeatureStatistics(features: sampleFeatures)
            try NPZ.write(path: saveStats, arrays: [("mu", NPYArray(shape: [s.dimension], values: s.mean)),
                                                    ("sigma", NPYArray(shape: [s.dimension, s.dimension], values: s.covariance.values))])
            if !json { print("wrote \(saveStats) (mu, sigma of \(n) × \(s.dimension) features)") }
        }
        guard let reference else { return }
        let refProgress = ProgressReporter(label: "reference features", total: referenceN, enabled: !quiet)
        let ref = try ReferenceSet.load(dataset: reference, split: referenceSplit, count: referenceN, network: network,
                                        progress: refProgress) { if !quiet { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } }
        var settings = QualitySettings()
        settings.kidSubsets = kidSubsets
        settings.kidSubsetSize = kidSubsetSize
        settings.k = k
        settings.densityK = densityK
        let q = try SampleQuality.evaluate(features: sampleFeatures, logits: logits, labels: labels, reference: ref, settings: settings)
        if json {
            var fields: [String: Any] = ["samples": description, "count": q.count, "reference": ref.description,
                                         "reference_count": q.referenceCount, "features": network.path, "features_checksum": network.checksum,
                                         "k": k, "density_k": densityK, "kid_subsets": kidSubsets,
                                         "kid_subset_size": min(kidSubsetSize, q.count, q.referenceCount)]
            for (name, value) in q.named { fields[name] = value }
            print(try Self.jsonText(fields))
            return
        }
        print("samples:   \(description)\(labels == nil ? "" : ", with labels")")
        print("reference: \(ref.description)")
        print("features:  \(network.path) (\(network.featureWidth) features, \(network.checksum))")
        print(String(format: "FD         %.4f", q.fd))
        print(String(format: "KID        %.6f ± %.6f (std over %d subsets of %d; standard error %.6f)", q.kid, q.kidStd, kidSubsets,
                     min(kidSubsetSize, q.count, q.referenceCount), q.kidStandardError))
        print(String(format: "precision  %.4f  recall %.4f  (k = %d)", q.precision, q.recall, k))
        print(String(format: "density    %.4f  coverage %.4f  (k = %d)", q.density, q.coverage, densityK))
        print(String(format: "IS         %.4f ± %.4f (%d splits)", q.inceptionScore, q.inceptionScoreStd, min(10, q.count)))
        if let a = q.accuracy { print(String(format: "accuracy   %.4f (the classifier on the samples' labels)", a)) }
    }

    static func jsonText(_ fields: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }
}
