import Foundation
import LoomStorage
import Testing

/// The VAE family end to end through the built binary: data-parallel equivalence, exact
/// resume with the discriminator, training, sampling, reconstruction, inspect and export,
/// and user mistakes.
@Suite(.serialized) struct VAETrainingTests {
    /// Overrides for a tiny KL autoencoder on 28×28 stripes (28 → 14 → 7).
    static func tinyAutoencoder(_ folder: String, steps: Int, extra: [String] = []) -> [String] {
        ["model.image_size=28", "model.base_channels=8", "model.groups=4", "model.latent_channels=2", "data.path=\(folder)/data",
         "train.batch_size=4", "train.max_steps=\(steps)", "logging.every=3", "sample.every=0", "sample.n=16",
         "checkpoint.every=1000", "train.check_replicas_every=3", "vae.held_out=8"] + extra
    }

    static var autoencoderConfig: String { TrainingTests.configs + "/autoencoder-fashion.yaml" }

    @Test(arguments: ["kl_autoencoder", "mlp_vae", "conv_vae"]) func dataParallelStepsEqualOneProcessOnTheWholeBatch(_ model: String) throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "vae-ddp", "--model", model])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for rank in 0..<2 {
            let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("rank \(rank): selftest vae-ddp \(model) ok") }
            if let line, let value = Double(line.split(separator: " ").last!.dropLast()) {
                #expect(value <= 1e-5)
            } else {
                Issue.record("no result line in \(r.stdout)\n\(r.stderr)")
            }
        }
    }

    /// Test the test: without the all-reduce the comparison must fail.
    @Test func skippedAllReduceFailsTheCheck() throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "vae-ddp", "--fault", "skip-reduce"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("differs from the whole-batch"), "\(r.stderr)")
    }

    /// 2 ranks, KL autoencoder with the PatchGAN from step 4: 10 steps straight equal 5 steps,
    /// stop, resume, 5 more — bitwise, both optimizers and the counter included.
    @Test func stopAndResumeWithTheDiscriminatorIsBitwiseIdentical() throws {
        let folder = try TrainingTests.stripes(count: 64, size: 28)
        let extra = ["vae.disc_weight=0.5", "vae.disc_start=4", "vae.disc_layers=2", "vae.disc_channels=8", "vae.lr_d=0.0001"]
        func train(_ run: String, steps: Int, resume: Bool) throws {
            let r = try LoomBinary.mpirun(ranks: 2, ["worker", Self.autoencoderConfig] + Self.tinyAutoencoder(folder, steps: steps, extra: extra)
                                          + ["--run-dir", folder + "/" + run, "--resume", resume ? "auto" : "none"])
            #expect(r.status == 0, "\(r.stderr)")
            if resume { #expect(r.stdout.contains("resuming from")) }
        }
        try train("straight", steps: 10, resume: false)
        try train("resumed", steps: 5, resume: false)
        try train("resumed", steps: 10, resume: true)
        let a = try CheckpointStore.read(folder + "/straight/checkpoints/latest")
        let b = try CheckpointStore.read(folder + "/resumed/checkpoints/latest")
        #expect(a.step == 10 && b.step == 10)
        #expect(a.networks.map(\.name) == ["model", "discriminator"])
        #expect(a.optimizers.map(\.name) == ["optimizer", "optimizer_d"])
        #expect(a.counters["disc_updates"] == 6)            // steps 4 … 9 (0-based) update D
        #expect(a.rng["noise"]?.count == 2)
        #expect(a.bitwiseDifference(from: b) == nil, "\(a.bitwiseDifference(from: b) ?? "")")
        let half = try CheckpointStore.read(folder + "/resumed/checkpoints/step-00000005.h5")
        #expect(half.bitwiseDifference(from: b) != nil)
        let metrics = try String(contentsOfFile: folder + "/straight/metrics.jsonl", encoding: .utf8)
        for key in ["\"rec\"", "\"kl\"", "\"g_loss\"", "\"d_loss\"", "\"d_weight\"", "\"psnr\"", "\"lr_d\""] {
            #expect(metrics.contains(key), "metrics.jsonl lacks \(key)")
        }
        // The discriminator's loss is 0 before disc_start (step 3's window) and positive after.
        let lines = metrics.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect((lines[0]?["d_loss"] as? Double) == 0)
        #expect(((lines[2]?["d_loss"] as? Double) ?? 0) > 0)
    }

    /// An MLP VAE trains under 2 ranks; its checkpoint samples (prior and interpolation),
    /// reconstructs, inspects and exports like any other.
    @Test func mlpVAETrainsSamplesReconstructsAndExports() throws {
        let folder = try TrainingTests.stripes(count: 64, size: 28)
        let run = folder + "/run"
        let r = try LoomBinary.mpirun(ranks: 2, ["worker", TrainingTests.configs + "/vae-fashion.yaml",
                                                 "data.path=\(folder)/data", "train.batch_size=8", "train.max_steps=10",
                                                 "logging.every=5", "sample.every=10", "sample.n=16", "vae.held_out=8",
                                                 "--run-dir", run])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("652824 parameters") && r.stdout.contains("8 held-out images of the train split"), "\(r.stdout)")
        #expect(r.stdout.contains("step 10/10") && r.stdout.contains("elbo ") && r.stdout.contains("bits_per_dim "), "\(r.stdout)")
        // elbo = −(nll + kl) and bits/dim = (nll + kl) / (784 ln 2) in every log line.
        for line in try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n") {
            let m = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Double])
            #expect(abs(m["elbo"]! + m["nll"]! + m["kl"]!) < 1e-6 * abs(m["elbo"]!))
            #expect(abs(m["bits_per_dim"]! - (m["nll"]! + m["kl"]!) / (784 * log(2))) < 1e-6)
            #expect(m["psnr"]! > 0 && m["psnr"]! < 60)
        }
        #expect(FileManager.default.fileExists(atPath: run + "/samples/step-00000010.png"))

        let s = try LoomBinary.loom(["sample", run, folder + "/prior.png", "--n", "6", "--raw", folder + "/raw.h5"])
        #expect(s.status == 0, "\(s.stderr)")
        let raw = try H5File.open(folder + "/raw.h5")
        #expect(try raw.root.openDataset("samples").shape == [6, 28, 28, 1])
        let walk = try LoomBinary.loom(["sample", run, folder + "/walk.png", "--n", "2", "--interpolate", "6"])
        #expect(walk.status == 0, "\(walk.stderr)")
        let png = try PNG.read(path: folder + "/walk.png")
        #expect(png.width > 2 * png.height, "6 columns × 2 rows: \(png.width)×\(png.height)")

        let rec = try LoomBinary.loom(["reconstruct", run, folder + "/data", folder + "/rec.png", "--n", "8", "--split", "train"])
        #expect(rec.status == 0, "\(rec.stderr)")
        #expect(rec.stdout.contains("8 images of") && rec.stdout.contains("mean PSNR ") && rec.stdout.contains(" dB, mean L1 "), "\(rec.stdout)")
        let grid = try PNG.read(path: folder + "/rec.png")
        #expect(grid.width == 8 * 28 + 9 * 2 && grid.height == 2 * 28 + 3 * 2, "8 columns × 2 rows: \(grid.width)×\(grid.height)")

        let inspect = try LoomBinary.loom(["inspect", run + "/checkpoints/latest"])
        #expect(inspect.status == 0 && inspect.stdout.contains("model"), "\(inspect.stdout)\(inspect.stderr)")
        let export = try LoomBinary.loom(["export", run + "/checkpoints/latest", folder + "/vae.h5"])
        #expect(export.status == 0 && export.stdout.contains("exported model") && export.stdout.contains("652,824"),
                "\(export.stdout)\(export.stderr)")
        let fromExport = try LoomBinary.loom(["sample", folder + "/vae.h5", folder + "/prior2.png", "--n", "4"])
        #expect(fromExport.status == 0, "\(fromExport.stderr)")

        let wrong = try LoomBinary.loom(["sample", run, folder + "/x.png", "--guidance", "2"])
        #expect(wrong.status == 1 && wrong.stderr.contains("--guidance does not apply to a VAE"), "\(wrong.stderr)")
    }

    @Test func benchTrainMeasuresW4() throws {
        let r = try LoomBinary.loom(["bench", "train", "--config", TrainingTests.configs + "/vae-kl-f4.yaml", "--only", "1x1",
                                     "--steps", "1", "--warmup", "1", "train.batch_size=2"])
        #expect(r.status == 0, "\(r.stderr)")
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("RESULT 1x1 ") }
        #expect(line.flatMap { Double($0.split(separator: " ").last!) }.map { $0 > 0 } == true, "\(r.stdout)")
    }
}

/// VAE mistakes at the command line: one line naming the problem, exit 1, no trap.
@Suite(.serialized) struct VAEErrorTests {
    func worker(_ extra: [String]) throws -> LoomBinary.Result {
        try LoomBinary.loom(["worker", VAETrainingTests.autoencoderConfig] + extra + ["--run-dir", Fixture.folder("vae-errors") + "/run"])
    }

    func expectOneLineError(_ r: LoomBinary.Result, contains text: String) {
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n").filter { !$0.contains("OPENBLAS_CORETYPE") && !$0.contains("picked its") }
        #expect(lines.count == 1 && lines[0].contains(text), "stderr: \(r.stderr)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Backtrace"))
    }

    @Test func ganKeysInAVAEConfig() throws {
        expectOneLineError(try worker(["gan.n_critic=2"]), contains: "'gan.n_critic' does not apply to model.type kl_autoencoder")
        expectOneLineError(try worker(["model.d_channels=32"]), contains: "'model.d_channels' does not apply to model.type kl_autoencoder")
    }

    @Test func latentSizeZero() throws {
        expectOneLineError(try worker(["model.latent_channels=0"]), contains: "'model.latent_channels' must be between 1 and 4096, found 0")
        let mlp = try LoomBinary.loom(["worker", TrainingTests.configs + "/vae-fashion.yaml", "model.latent_dim=0",
                                       "--run-dir", Fixture.folder("vae-errors") + "/run"])
        expectOneLineError(mlp, contains: "'model.latent_dim' must be between 1 and 65536, found 0")
    }

    @Test func reconstructWithADataSetOfAnotherShape() throws {
        let folder = try TrainingTests.stripes(count: 16, size: 28)
        let run = folder + "/run"
        let r = try LoomBinary.loom(["worker", VAETrainingTests.autoencoderConfig] + VAETrainingTests.tinyAutoencoder(folder, steps: 1)
                                    + ["--run-dir", run])
        #expect(r.status == 0, "\(r.stderr)")
        let other = try TrainingTests.stripes(count: 16, size: 8)
        let bad = try LoomBinary.loom(["reconstruct", run, other + "/data", folder + "/x.png", "--split", "train"])
        expectOneLineError(bad, contains: "sample_shape")
        #expect(bad.stderr.contains("[28, 28, 1]") && bad.stderr.contains("[8, 8, 1]"), "\(bad.stderr)")
        let gan = try LoomBinary.loom(["reconstruct", run, folder + "/data", folder + "/x.png", "--split", "nope"])
        expectOneLineError(gan, contains: "split")
    }
}
