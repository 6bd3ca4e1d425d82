import Foundation
import LoomStorage
import Testing

/// Latent diffusion end to end through the built binary: `loom encode` (1 and 2 ranks, the
/// stored posteriors against the autoencoder, the scale factor against NumPy), a latent run's
/// exact resume and its samples, and the mistakes (a wrong or changed autoencoder, latents in a
/// pixel config, images in a latent config, bad encode arguments).
@Suite(.serialized) struct LatentDiffusionTests {
    /// A tiny KL autoencoder on 28×28 stripes (latents 7×7×2), a second one from another seed,
    /// and the stripes encoded at 1 rank, at 2 ranks, and as means only.
    struct Setup {
        var folder: String
        var images: String { folder + "/images" }
        var autoencoder: String { folder + "/ae/checkpoints/latest" }
        var otherAutoencoder: String { folder + "/ae-other/checkpoints/latest" }
        var latents: String { folder + "/latents-1" }
        var latents2: String { folder + "/latents-2" }
        var means: String { folder + "/means" }
        var diffusion: String { folder + "/ldm-setup" }
    }

    static let setup: Result<Setup, Error> = Result {
        let stripes = try TrainingTests.stripes(count: 96, size: 28)
        let s = Setup(folder: stripes)
        // Two splits (train 72, val 24), so that splits and --split are exercised.
        try check(try LoomBinary.loom(["prepare", "idx", "--images", stripes + "/images.idx", "--labels", stripes + "/labels.idx",
                                       "--val-fraction", "0.25", "--quiet", s.images]))
        for (run, seed, steps) in [("ae", 0, 8), ("ae-other", 7, 2)] {
            try check(try LoomBinary.loom(["worker", VAETrainingTests.autoencoderConfig]
                                          + VAETrainingTests.tinyAutoencoder(stripes, steps: steps)
                                          + ["data.path=\(s.images)", "seed=\(seed)", "vae.scale_lr=false", "optimizer.lr=0.002",
                                             "--run-dir", stripes + "/" + run]))
        }
        // Batches of 10: 8 batches of train, 3 of val, so the last round of 2 ranks is uneven.
        try check(try LoomBinary.loom(["encode", s.autoencoder, s.images, s.latents, "--batch", "10", "--quiet"]))
        try check(try LoomBinary.mpirun(ranks: 2, ["encode", s.autoencoder, s.images, s.latents2, "--batch", "10", "--quiet"]))
        try check(try LoomBinary.loom(["encode", s.autoencoder, s.images, s.means, "--mode", "mean", "--split", "train", "--quiet"]))
        // A diffusion checkpoint, to be refused where an autoencoder belongs.
        try check(try LoomBinary.loom(["worker", ldmConfig] + tinyLatentUNet(s, data: s.means, run: s.diffusion, steps: 1)))
        return s
    }

    static func check(_ r: LoomBinary.Result) throws {
        guard r.status == 0 else { throw CocoaError(.executableLoad, userInfo: ["stderr": r.stderr, "stdout": r.stdout]) }
    }

    /// Overrides for a tiny class-conditional latent U-Net on 7×7×2 latents.
    static func tinyLatentUNet(_ s: Setup, data: String, run: String, steps: Int, extra: [String] = []) -> [String] {
        ["first_stage.checkpoint=\(s.autoencoder)", "data.path=\(data)", "model.image_size=7", "model.in_channels=2",
         "model.base_channels=8", "model.channel_mult=[1]", "model.attention_resolutions=[7]", "model.num_heads=2", "model.groups=4",
         "model.num_classes=2", "train.batch_size=6", "train.max_steps=\(steps)", "diffusion.timesteps=100", "logging.every=3",
         "sample.every=3", "sample.n=4", "sample.steps=5", "checkpoint.every=3", "train.check_replicas_every=3", "--run-dir", run] + extra
    }

    static var ldmConfig: String { TrainingTests.configs + "/ldm-fashion.yaml" }

    @Test func encodingAtOneAndTwoRanksGivesIdenticalFiles() throws {
        let s = try Self.setup.get()
        #expect(try DatasetChecksum.of(folder: s.latents) == DatasetChecksum.of(folder: s.latents2))
        let index = try DatasetIndex.load(folder: s.latents)
        #expect(index.kind == .latents && index.sampleShape == [7, 7, 4] && index.splits.keys.sorted() == ["train", "val"])
        let record = try #require(index.latents)
        #expect(record.mode == .meanStd && record.latentShape == [7, 7, 2] && record.imageShape == [28, 28, 1])
        #expect(record.autoencoder.hasSuffix("/ae/checkpoints/step-00000008.h5") && record.scaleSplit == "train")
        let ae = try CheckpointStore.read(s.autoencoder)
        #expect(record.autoencoderChecksum == "xxh64:" + XXH64.hex(CheckpointFile.checksum(of: ae.network("model")!)))
        for split in ["train", "val"] {
            let source = try ShardedDataset(folder: s.images, split: split)
            let encoded = try ShardedDataset(folder: s.latents, split: split, expectedKind: .latents)
            #expect(encoded.count == source.count && encoded.labels == source.labels && source.labels != nil)
        }
        let means = try DatasetIndex.load(folder: s.means)
        #expect(means.sampleShape == [7, 7, 2] && means.latents?.mode == .mean && means.splits.keys.sorted() == ["train"])
    }

    @Test func decodingTheStoredMeansGivesTheAutoencodersReconstruction() throws {
        let s = try Self.setup.get()
        for (set, std) in [(s.latents, true), (s.means, false)] {
            let split = std ? "val" : "train"
            let r = try LoomBinary.loom(["selftest", "latents", s.autoencoder, set, s.images, "--split", split, "--n", "16"])
            #expect(r.status == 0, "\(r.stderr)")
            let line = try #require(r.stdout.split(separator: "\n").first { $0.hasPrefix("selftest latents: 16 samples") }, "\(r.stdout)")
            let numbers = line.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: CharacterSet(charactersIn: "(),"))) }
                .filter { $0 != 16 }
            // decode(stored μ) vs the autoencoder's own reconstruction: as close as float32 rounding.
            #expect(numbers.count == (std ? 3 : 2), "\(line)")
            #expect(numbers[0] <= 1e-5 * max(numbers[1], 1) && numbers[1] > 0.01, "\(line)")
            if std { #expect(numbers[2] <= 1e-5, "\(line)") }
        }
        // Test the test: the other autoencoder's reconstruction is far from the stored latents decoded.
        let r = try LoomBinary.loom(["selftest", "latents", s.otherAutoencoder, s.latents, s.images, "--split", "val", "--n", "16"])
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("selftest latents:") } ?? ""
        let difference = line.split(separator: " ").compactMap { Double($0) }.dropFirst().first ?? 0
        #expect(r.status == 0 && difference > 1e-2, "\(r.stdout)\(r.stderr)")
    }

    @Test func theScaleFactorIsOneOverTheStdOfTheStoredLatents() throws {
        let s = try Self.setup.get()
        let python = try #require(try LoomBinary.pythonWithH5py(), "h5py is not installed (Debian package python3-h5py; scripts/setup installs it)")
        // NumPy, independently: z = μ + σ·ε pooled over every element of the train split has
        // variance mean(μ² + σ²) − mean(μ)²; means only: the variance of μ.
        let script = """
            import h5py, json, sys, numpy as np
            def load(root):
                index = json.load(open(root + "/index.json"))
                parts = [h5py.File(root + "/" + s["file"], "r")["latents"][...] for s in index["splits"]["train"]["shards"]]
                return index, np.concatenate(parts).astype(np.float64)
            index, x = load(sys.argv[1])
            mu, sd = x[..., :2], x[..., 2:]
            assert (sd > 0).all()
            std = np.sqrt(np.mean(mu ** 2 + sd ** 2) - np.mean(mu) ** 2)
            means_index, m = load(sys.argv[2])
            assert np.array_equal(m, mu), "the means of --mode mean differ from the mean_std set's"
            print(repr(index["latents"]["scale_factor"] * std), repr(means_index["latents"]["scale_factor"] * np.std(m)))
            """
        let r = try LoomBinary.run(python, ["-c", script, s.latents, s.means])
        #expect(r.status == 0, "\(r.stderr)")
        let products = r.stdout.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        #expect(products.count == 2 && products.allSatisfy { abs($0 - 1) < 1e-6 }, "\(r.stdout)")
    }

    @Test func aLatentRunResumesBitwiseAndSamplesDecodeThroughTheAutoencoder() throws {
        let s = try Self.setup.get()
        func train(_ run: String, steps: Int, resume: Bool) throws {
            let r = try LoomBinary.mpirun(ranks: 2, ["worker", Self.ldmConfig] + Self.tinyLatentUNet(s, data: s.latents, run: s.folder + "/" + run, steps: steps)
                                          + ["--resume", resume ? "auto" : "none"])
            #expect(r.status == 0, "\(r.stderr)")
            if resume { #expect(r.stdout.contains("resuming from")) }
        }
        try train("ldm-straight", steps: 6, resume: false)
        try train("ldm-resumed", steps: 3, resume: false)
        try train("ldm-resumed", steps: 6, resume: true)
        let a = try CheckpointStore.read(s.folder + "/ldm-straight/checkpoints/latest")
        let b = try CheckpointStore.read(s.folder + "/ldm-resumed/checkpoints/latest")
        #expect(a.step == 6 && a.rng["latents"]?.count == 2)
        #expect(a.bitwiseDifference(from: b) == nil, "\(a.bitwiseDifference(from: b) ?? "")")
        let record = try #require(try DatasetIndex.load(folder: s.latents).latents)
        #expect(a.metadata["first_stage.checksum"] == record.autoencoderChecksum)
        #expect(a.metadata["first_stage.checkpoint"] == record.autoencoder)
        #expect(Float(a.metadata["first_stage.scale_factor"] ?? "") == Float(record.scaleFactor))
        // Previews are decoded images: 4 tiles of 28×28 in a 2-column grid (one class per column).
        let preview = try PNG.read(path: s.folder + "/ldm-straight/samples/step-00000006.png", channels: 1)
        #expect(preview.width == 2 + 2 * 30 && preview.height == 2 + 2 * 30)

        // loom sample decodes through the autoencoder; --raw keeps the latents too.
        let run = s.folder + "/ldm-straight"
        var r = try LoomBinary.loom(["sample", run, s.folder + "/s.png", "--n", "4", "--raw", s.folder + "/s.h5"])
        #expect(r.status == 0, "\(r.stderr)")
        var file = try H5File.open(s.folder + "/s.h5")
        let samples = try file.root.openDataset("samples"), latents = try file.root.openDataset("latents")
        #expect(samples.shape == [4, 28, 28, 1] && latents.shape == [4, 7, 7, 2])
        #expect(try samples.read(as: Float.self).allSatisfy { abs($0) <= 1 })
        samples.close(); latents.close(); file.close()
        // Inpainting keeps the given half exactly (pasted back after decoding) and edits the other.
        r = try LoomBinary.loom(["sample", run, s.folder + "/e.png", "--n", "3", "--init", s.images, "--mask", "right",
                                 "--strength", "0.7", "--raw", s.folder + "/e.h5"])
        #expect(r.status == 0, "\(r.stderr)")
        file = try H5File.open(s.folder + "/e.h5")
        let edited = try file.root.read("samples", as: Float.self)
        file.close()
        let source = try ShardedDataset(folder: s.images, split: "train")  // --init takes a folder's test split, else train
        var bytes = [UInt8](repeating: 0, count: 3 * 28 * 28)
        try bytes.withUnsafeMutableBytes { try source.read(0..<3, into: $0.baseAddress!) }
        var kept = true, changed = false
        for i in 0..<(3 * 28 * 28) {
            let x = i % 28, original = (Float(bytes[i]) - 127.5) / 127.5
            if x >= 14 { kept = kept && edited[i] == original } else { changed = changed || abs(edited[i] - original) > 0.05 }
        }
        #expect(kept && changed)
    }

    @Test func aWrongOrChangedAutoencoderIsRefusedInOneLine() throws {
        let s = try Self.setup.get()
        let other = try CheckpointStore.resolve(s.otherAutoencoder), mine = try CheckpointStore.resolve(s.autoencoder)
        let checksums = try [mine, other].map { "xxh64:" + XXH64.hex(CheckpointFile.checksum(of: try CheckpointFile.read($0).network("model")!)) }
        // Another autoencoder than the one that encoded the set.
        var r = try LoomBinary.loom(["worker", Self.ldmConfig] + Self.tinyLatentUNet(s, data: s.latents, run: s.folder + "/wrong", steps: 2)
                                    + ["first_stage.checkpoint=\(s.otherAutoencoder)"])
        #expect(r.status == 1 && r.stderrLines.count == 1, "\(r.stderr)")
        for part in [s.latents, mine, checksums[0], other, checksums[1]] { #expect(r.stderr.contains(part), "\(part) in \(r.stderr)") }

        // The autoencoder's file changes after encoding and training: resume and sampling refuse it.
        let copy = s.folder + "/ae-copy.h5", data = s.folder + "/latents-copy", run = s.folder + "/changed"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: mine, toPath: copy)
        try Self.check(try LoomBinary.loom(["encode", copy, s.images, data, "--quiet"]))
        let args = ["worker", Self.ldmConfig] + Self.tinyLatentUNet(s, data: data, run: run, steps: 2) + ["first_stage.checkpoint=\(copy)"]
        try Self.check(try LoomBinary.loom(args))
        try FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: other, toPath: copy)
        r = try LoomBinary.loom(args + ["train.max_steps=4", "--resume", "auto"])
        #expect(r.status == 1 && r.stderrLines.count == 1, "\(r.stderr)")
        for part in [data, copy, checksums[0], checksums[1]] { #expect(r.stderr.contains(part), "\(part) in \(r.stderr)") }
        r = try LoomBinary.loom(["sample", run, s.folder + "/x.png", "--n", "2"])
        #expect(r.status == 1 && r.stderrLines.count == 1, "\(r.stderr)")
        for part in ["step-00000002.h5", copy, checksums[0], checksums[1]] { #expect(r.stderr.contains(part), "\(part) in \(r.stderr)") }

        // A checkpoint that is no autoencoder.
        r = try LoomBinary.loom(["worker", Self.ldmConfig] + Self.tinyLatentUNet(s, data: s.latents, run: s.folder + "/not-ae", steps: 2)
                                + ["first_stage.checkpoint=\(s.diffusion)"])
        #expect(r.status == 1 && r.stderr.contains("is a model.type unet checkpoint; the first stage must be a kl_autoencoder"), "\(r.stderr)")
    }

    @Test func latentsAndPixelConfigsDoNotMix() throws {
        let s = try Self.setup.get()
        // A latent set in a pixel-space config (worker and loom train): names the set, its autoencoder and the fix.
        let pixel = ["worker", TrainingTests.configs + "/ddpm-fashion.yaml"] + TrainingTests.tiny(s.folder, steps: 2)
            + ["data.path=\(s.latents)", "--run-dir", s.folder + "/pixel"]
        for args in [pixel, ["train"] + pixel.dropFirst() + ["--nproc", "1"]] {
            let r = try LoomBinary.loom(Array(args))
            #expect(r.status == 1 && r.stderrLines.count == 1, "\(r.stderr)")
            #expect(r.stderr.contains("data.path \(s.latents) is a latent data set") && r.stderr.contains("set first_stage.checkpoint: "), "\(r.stderr)")
        }
        // Images in a latent config; a denoiser not sized for the latents.
        var r = try LoomBinary.loom(["worker", Self.ldmConfig] + Self.tinyLatentUNet(s, data: s.images, run: s.folder + "/l1", steps: 2))
        #expect(r.status == 1 && r.stderr.contains("holds images [28, 28, 1], but first_stage.checkpoint is set"), "\(r.stderr)")
        r = try LoomBinary.loom(["worker", Self.ldmConfig] + Self.tinyLatentUNet(s, data: s.latents, run: s.folder + "/l2", steps: 2,
                                                                                extra: ["model.image_size=8", "model.attention_resolutions=[8]"]))
        #expect(r.status == 1 && r.stderr.contains("set model.image_size: 7 and model.in_channels: 2"), "\(r.stderr)")
    }

    @Test func encodeMistakesAreOneLine() throws {
        let s = try Self.setup.get()
        let small = try TrainingTests.stripes(count: 16, size: 8)
        let cases: [([String], String)] = [
            ([s.autoencoder, s.latents, s.folder + "/o1"], "holds latents, not images"),
            ([s.autoencoder, small + "/data", s.folder + "/o2"], "holds [8, 8, 1] images ([H, W, C]) but the autoencoder"),
            ([s.autoencoder, s.images, s.folder + "/o3", "--split", "train,nope"], "\"nope\" (--split)"),
            ([s.autoencoder, s.images, s.folder + "/o4", "--mode", "median"], "--mode must be one of mean_std, mean"),
            ([s.autoencoder, s.images, s.latents], "already exists"),
            ([s.diffusion, s.images, s.folder + "/o5"], "the first stage must be a kl_autoencoder"),
            ([s.autoencoder, s.images, s.folder + "/o6", "--batch", "0"], "--batch must be between 1 and 65536"),
        ]
        for (args, message) in cases {
            let r = try LoomBinary.loom(["encode"] + args)
            #expect(r.status == 1 && r.stderrLines.count == 1 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        // Under mpirun every rank stops (no hang) and one line is printed.
        let r = try LoomBinary.mpirun(ranks: 2, ["encode", s.autoencoder, small + "/data", s.folder + "/o7"])
        #expect(r.status != 0 && r.stderr.components(separatedBy: "loom encode:").count == 2, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.folder + "/o7"))
    }
}
