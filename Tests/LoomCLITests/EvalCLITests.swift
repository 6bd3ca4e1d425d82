import Foundation
import LoomStorage
import Testing

/// `loom eval` end to end through the binary: a classifier trained on the shared loop is the
/// feature network; real images score better than their blurred copies on every metric; the
/// reference statistics are cached; `--stats` on hand-made npz files matches the formula; and
/// user mistakes are one line.
@Suite(.serialized) struct EvalCLITests {
    /// 8×8 stripes of two classes (horizontal, vertical) in a dataset with a train and a val
    /// split (half each).
    static func stripesWithVal(count: Int = 480) throws -> String {
        let folder = Fixture.folder("eval-stripes")
        var pixels = [UInt8](), labels = [UInt8]()
        var rng: UInt64 = 777
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        for i in 0..<count {
            let label = i % 2, phase = Int(next() % 2)
            for y in 0..<8 { for x in 0..<8 {
                let on = ((label == 0 ? y : x) + phase) % 2 == 0
                pixels.append(UInt8(on ? 200 + Int(next() % 56) : Int(next() % 56)))
            } }
            labels.append(UInt8(label))
        }
        try IDX.write(path: folder + "/images.idx", array: IDXArray(dims: [count, 8, 8], bytes: pixels), gzip: false)
        try IDX.write(path: folder + "/labels.idx", array: IDXArray(dims: [count], bytes: labels), gzip: false)
        let r = try LoomBinary.loom(["prepare", "idx", "--images", folder + "/images.idx", "--labels", folder + "/labels.idx",
                                     "--val-fraction", "0.5", "--seed", "1", "--quiet", "--overwrite", folder + "/data"])
        guard r.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["stderr": r.stderr]) }
        return folder
    }

    /// Overrides of configs/classifier-fashion.yaml for a tiny classifier of the stripes.
    static func tinyClassifier(_ data: String, steps: Int = 40) -> [String] {
        ["model.image_size=8", "model.width=8", "model.blocks=[1,1]", "model.num_classes=2", "data.path=\(data)",
         "data.random_flip=false", "train.batch_size=16", "train.max_steps=\(steps)", "logging.every=20", "classifier.held_out=64",
         "checkpoint.every=1000", "optimizer.lr=0.01", "schedule.warmup_steps=5"]
    }

    /// Trains the tiny classifier (one process) and returns its run folder.
    static func classifier(_ folder: String) throws -> String {
        let run = folder + "/classifier"
        let r = try LoomBinary.loom(["worker", TrainingTests.configs + "/classifier-fashion.yaml"] + tinyClassifier(folder + "/data")
                                    + ["--run-dir", run])
        guard r.status == 0 else { throw CocoaError(.executableLoad, userInfo: ["stderr": r.stderr]) }
        return run
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func realImagesBeatTheirBlurredCopiesOnEveryMetric() throws {
        let folder = try Self.stripesWithVal()
        let run = try Self.classifier(folder)
        // The classifier trained: its held-out accuracy is logged and high on the stripes.
        let log = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        let last = try Self.json(String(log.split(separator: "\n").last!))
        #expect(((last["test_accuracy"] as? Double) ?? 0) > 0.9, "\(last)")
        #expect(((last["accuracy"] as? Double) ?? 0) > 0.9, "\(last)")

        let common = ["--reference", folder + "/data", "--reference-split", "train", "--features", run, "--split", "val",
                      "--kid-subsets", "20", "--kid-subset-size", "100", "--json", "--quiet"]
        let real = try LoomBinary.loom(["eval", folder + "/data"] + common)
        #expect(real.status == 0, "\(real.stderr)")
        let blurred = try LoomBinary.loom(["eval", folder + "/data", "--blur", "1"] + common)
        #expect(blurred.status == 0, "\(blurred.stderr)")
        let a = try Self.json(real.stdout), b = try Self.json(blurred.stdout)
        func v(_ d: [String: Any], _ k: String) -> Double { d[k] as? Double ?? .nan }
        for key in ["fd", "kid"] { #expect(v(a, key) < v(b, key), "\(key): real \(v(a, key)), blurred \(v(b, key))") }
        for key in ["precision", "recall", "density", "coverage", "accuracy", "is"] {
            #expect(v(a, key) > v(b, key), "\(key): real \(v(a, key)), blurred \(v(b, key))")
        }
        #expect(v(a, "accuracy") > 0.9 && (a["count"] as? Int) == 240 && (a["reference_count"] as? Int) == 240, "\(a)")

        // The reference statistics were cached beside the data, keyed by the network's checksum,
        // and a second run reads them back to the same numbers.
        let cache = try FileManager.default.contentsOfDirectory(atPath: folder + "/data/.loom-eval")
        let checksum = try #require((a["features_checksum"] as? String)?.replacingOccurrences(of: "xxh64:", with: ""))
        #expect(cache.count == 1 && cache[0].hasPrefix("train-10000-\(checksum)"), "\(cache)")
        let again = try LoomBinary.loom(["eval", folder + "/data"] + common.filter { $0 != "--quiet" })
        #expect(again.stderr.contains("from the cache"), "\(again.stderr)")
        let c = try Self.json(again.stdout)
        for key in ["fd", "kid", "precision", "recall", "density", "coverage"] { #expect(v(a, key) == v(c, key), "\(key)") }

        // --save-stats writes pytorch-fid's layout; the FD of the file with itself is 0, and
        // its mu/sigma are the features' mean and covariance as NumPy reads them.
        let stats = folder + "/val.npz"
        let s = try LoomBinary.loom(["eval", folder + "/data", "--split", "val", "--features", run, "--save-stats", stats, "--quiet"])
        #expect(s.status == 0, "\(s.stderr)")
        let same = try LoomBinary.loom(["eval", "--stats", stats, stats, "--json"])
        let sameFD = v(try Self.json(same.stdout), "fd")
        #expect(same.status == 0 && sameFD < 1e-9, "\(same.stdout)\(same.stderr)")
        let python = try #require(try LoomBinary.pythonWithH5py())
        let np = try LoomBinary.run(python, ["-c", "import numpy as np; d = np.load('\(stats)'); print(d['mu'].shape, d['sigma'].shape, bool(np.allclose(d['sigma'], d['sigma'].T)))"])
        #expect(np.stdout.contains("(16,) (16, 16) True"), "\(np.stdout)\(np.stderr)")
    }

    /// Two statistic files made by NumPy (`np.savez` stored, `np.savez_compressed` deflated):
    /// FD = ‖Δμ‖² + tr Σ₁ + tr Σ₂ − 2√(tr Σ₁Σ₂ + 2√(det Σ₁ det Σ₂)) for 2×2 covariances.
    @Test func statsOfTwoNpzFilesMatchTheFormula() throws {
        let folder = Fixture.folder("eval-npz")
        let python = try #require(try LoomBinary.pythonWithH5py())
        let make = try LoomBinary.run(python, ["-c", """
            import numpy as np
            np.savez('\(folder)/a.npz', mu=np.array([1.0, -2.0]), sigma=np.array([[2.0, 0.6], [0.6, 1.0]]))
            np.savez_compressed('\(folder)/b.npz', mu=np.array([0.5, 0.25]), sigma=np.array([[0.5, -0.3], [-0.3, 3.0]]))
            np.savez('\(folder)/nomu.npz', sigma=np.eye(2))
            np.savez('\(folder)/wide.npz', mu=np.zeros(3), sigma=np.eye(3))
            """])
        #expect(make.status == 0, "\(make.stderr)")
        let trProduct = 2.0 * 0.5 + 0.6 * -0.3 + 0.6 * -0.3 + 1.0 * 3.0, det = (2.0 - 0.36) * (1.5 - 0.09)
        let expected = 0.25 + 5.0625 + 3 + 3.5 - 2 * (trProduct + 2 * det.squareRoot()).squareRoot()
        let r = try LoomBinary.loom(["eval", "--stats", folder + "/a.npz", folder + "/b.npz", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let fd = try Self.json(r.stdout)["fd"] as? Double ?? .nan
        #expect(abs(fd - expected) < 1e-12, "FD \(fd), formula \(expected)")

        let noMu = try LoomBinary.loom(["eval", "--stats", folder + "/a.npz", folder + "/nomu.npz"])
        #expect(noMu.status == 1 && noMu.stderrLines.count == 1 && noMu.stderr.contains("nomu.npz: has no 'mu' array"), "\(noMu.stderr)")
        let wide = try LoomBinary.loom(["eval", "--stats", folder + "/a.npz", folder + "/wide.npz"])
        #expect(wide.status == 1 && wide.stderrLines.count == 1 && wide.stderr.contains("3-wide"), "\(wide.stderr)")
        try Data("not a zip".utf8).write(to: URL(fileURLWithPath: folder + "/junk.npz"))
        let junk = try LoomBinary.loom(["eval", "--stats", folder + "/a.npz", folder + "/junk.npz"])
        #expect(junk.status == 1 && junk.stderrLines.count == 1 && junk.stderr.contains("not a valid .npz"), "\(junk.stderr)")
    }

    /// Samples of another image shape, a features checkpoint that is no classifier, a missing
    /// option: one line each, exit status 1.
    @Test func badInputsAreOneLineErrors() throws {
        let folder = try Self.stripesWithVal(count: 96)
        let run = try Self.classifier(folder)
        // A 28×28 sample file against the 8×8 classifier and reference.
        let h5 = try H5File.create(folder + "/wrong.h5", overwrite: true)
        try h5.root.write("samples", values: [Float](repeating: 0, count: 10 * 28 * 28), shape: [10, 28, 28, 1])
        h5.close()
        let shape = try LoomBinary.loom(["eval", folder + "/wrong.h5", "--reference", folder + "/data", "--features", run])
        #expect(shape.status == 1 && shape.stderrLines.count == 1 && shape.stderr.contains("/samples is 28×28×1 images"), "\(shape.stderr)")
        // A diffusion checkpoint as the feature network.
        let unet = folder + "/unet"
        let t = try LoomBinary.loom(["worker", TrainingTests.configs + "/ddpm-fashion.yaml"] + TrainingTests.tiny(folder, steps: 1)
                                    + ["--run-dir", unet])
        #expect(t.status == 0, "\(t.stderr)")
        let notClassifier = try LoomBinary.loom(["eval", folder + "/data", "--reference", folder + "/data", "--features", unet])
        #expect(notClassifier.status == 1 && notClassifier.stderrLines.count == 1
                && notClassifier.stderr.contains("is a model.type unet checkpoint, not a classifier"), "\(notClassifier.stderr)")
        // A classifier cannot be sampled, and eval needs its feature network.
        let sample = try LoomBinary.loom(["sample", run, folder + "/x.png"])
        #expect(sample.status == 1 && sample.stderrLines.count == 1 && sample.stderr.contains("does not generate images"), "\(sample.stderr)")
        let missing = try LoomBinary.loom(["eval", folder + "/data", "--reference", folder + "/data"])
        #expect(missing.status == 1 && missing.stderr.contains("--features CLASSIFIER_CKPT is required"), "\(missing.stderr)")
        let reference = try LoomBinary.loom(["eval", folder + "/data", "--reference", folder + "/nowhere", "--features", run])
        #expect(reference.status == 1 && reference.stderrLines.count == 1 && reference.stderr.contains("nowhere"), "\(reference.stderr)")
    }
}
