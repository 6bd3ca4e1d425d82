import Foundation
import LoomStorage
import Testing

/// The GAN family end to end through the built binary: data-parallel equivalence, exact
/// resume, training, sampling, inspect and export, and user mistakes.
@Suite(.serialized) struct GANTrainingTests {
    /// Overrides for a tiny DCGAN on 28×28 stripes.
    static func tiny(_ folder: String, steps: Int, extra: [String] = []) -> [String] {
        ["model.type=dcgan", "model.image_size=28", "model.in_channels=1", "model.z_dim=16", "model.g_channels=8",
         "model.d_channels=8", "data.path=\(folder)/data", "train.batch_size=8", "train.max_steps=\(steps)",
         "logging.every=5", "sample.every=0", "sample.n=16", "checkpoint.every=1000", "ema.decay=0.9",
         "train.check_replicas_every=5"] + extra
    }

    /// The GAN configs share their sections with dcgan-fashion.yaml; the tests override the rest.
    static var config: String { TrainingTests.configs + "/dcgan-fashion.yaml" }

    @Test(arguments: ["bce", "wgan_gp", "hinge"]) func dataParallelStepsEqualOneProcessOnTheWholeBatch(_ loss: String) throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "gan-ddp", "--loss", loss])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for rank in 0..<2 {
            let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("rank \(rank): selftest gan-ddp \(loss) ok") }
            if let line, let value = Double(line.split(separator: " ").last!.dropLast()) {
                #expect(value <= 1e-5)
            } else {
                Issue.record("no result line in \(r.stdout)\n\(r.stderr)")
            }
        }
    }

    @Test func dataParallelOverTCPWithFourRanks() throws {
        let r = try LoomBinary.mpirun(ranks: 4, mpiFlags: ["--mca", "btl", "self,tcp"],
                                      ["selftest", "gan-ddp", "--loss", "hinge", "--batch", "2"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("rank 3: selftest gan-ddp hinge ok over 4 ranks"))
    }

    /// Test the test: without the all-reduce the comparison must fail.
    @Test func skippedAllReduceFailsTheCheck() throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "gan-ddp", "--loss", "wgan_gp", "--fault", "skip-reduce"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("differs from the whole-batch"), "\(r.stderr)")
    }

    /// 2-rank WGAN-GP: 12 steps straight equal 6 steps, stop, resume, 6 more — bitwise.
    @Test func wganGPStopAndResumeIsBitwiseIdentical() throws {
        let folder = try TrainingTests.stripes(count: 96, size: 28)
        let extra = ["gan.loss=wgan_gp", "model.d_norm=none", "gan.n_critic=2", "optimizer.betas=[0.0,0.9]",
                     "optimizer.lr=0.0005"]
        func train(_ run: String, steps: Int, resume: Bool) throws {
            let r = try LoomBinary.mpirun(ranks: 2, ["worker", Self.config] + Self.tiny(folder, steps: steps, extra: extra)
                                          + ["--run-dir", folder + "/" + run, "--resume", resume ? "auto" : "none"])
            #expect(r.status == 0, "\(r.stderr)")
            if resume { #expect(r.stdout.contains("resuming from")) }
        }
        try train("straight", steps: 12, resume: false)
        try train("resumed", steps: 6, resume: false)
        try train("resumed", steps: 12, resume: true)
        let a = try CheckpointStore.read(folder + "/straight/checkpoints/latest")
        let b = try CheckpointStore.read(folder + "/resumed/checkpoints/latest")
        #expect(a.step == 12 && b.step == 12)
        #expect(a.networks.map(\.name) == ["generator", "discriminator", "generator_ema"])
        #expect(a.optimizers.map(\.name) == ["optimizer_g", "optimizer_d"])
        #expect(a.counters["critic_updates"] == 24 && a.counters["ema_updates"] == 12)
        #expect(a.bitwiseDifference(from: b) == nil, "\(a.bitwiseDifference(from: b) ?? "")")
        let half = try CheckpointStore.read(folder + "/resumed/checkpoints/step-00000006.h5")
        #expect(half.bitwiseDifference(from: b) != nil)
        let metrics = try String(contentsOfFile: folder + "/straight/metrics.jsonl", encoding: .utf8)
        for key in ["\"d_loss\"", "\"g_loss\"", "\"d_real\"", "\"d_fake\"", "\"gp\"", "\"wdist\"", "\"lr_g\"", "\"lr_d\""] {
            #expect(metrics.contains(key), "metrics.jsonl lacks \(key)")
        }
    }

    /// A conditional hinge GAN with spectral norm trains under 2 ranks; its checkpoint samples
    /// (per class, interpolated), inspects and exports like any other.
    @Test func conditionalGANTrainsSamplesAndExports() throws {
        let folder = try TrainingTests.stripes(count: 128, size: 28)
        let run = folder + "/run"
        let r = try LoomBinary.mpirun(ranks: 2, ["worker", Self.config] + Self.tiny(folder, steps: 10, extra: [
            "gan.loss=hinge", "model.d_norm=none", "model.spectral_norm=true", "model.num_classes=2",
            "gan.r1_gamma=1", "gan.r1_every=2", "sample.every=10", "sample.n=4"]) + ["--run-dir", run])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("step 10/10") && r.stdout.contains("r1 "), "\(r.stdout)")
        #expect(FileManager.default.fileExists(atPath: run + "/samples/step-00000010.png"))

        let grid = folder + "/grid.png"
        let s = try LoomBinary.loom(["sample", run, grid, "--n", "6", "--class", "1", "--raw", folder + "/raw.h5"])
        #expect(s.status == 0, "\(s.stderr)")
        let raw = try H5File.open(folder + "/raw.h5")
        #expect(try raw.root.openDataset("samples").shape == [6, 28, 28, 1])
        let walk = try LoomBinary.loom(["sample", run + "/checkpoints/latest", folder + "/walk.png", "--n", "3", "--interpolate", "5"])
        #expect(walk.status == 0, "\(walk.stderr)")
        let png = try PNG.read(path: folder + "/walk.png")
        #expect(png.width > png.height, "5 columns × 3 rows: \(png.width)×\(png.height)")

        let inspect = try LoomBinary.loom(["inspect", run + "/checkpoints/latest"])
        #expect(inspect.status == 0 && inspect.stdout.contains("generator_ema"), "\(inspect.stdout)\(inspect.stderr)")
        let export = try LoomBinary.loom(["export", run + "/checkpoints/latest", folder + "/g.h5"])
        #expect(export.status == 0 && export.stdout.contains("exported generator_ema"), "\(export.stdout)\(export.stderr)")
        let fromExport = try LoomBinary.loom(["sample", folder + "/g.h5", folder + "/grid2.png", "--n", "4"])
        #expect(fromExport.status == 0, "\(fromExport.stderr)")

        // Diffusion-only options are refused in one line.
        let wrong = try LoomBinary.loom(["sample", run, folder + "/x.png", "--sampler", "ddim"])
        #expect(wrong.status == 1 && wrong.stderr.contains("--sampler does not apply to a GAN"), "\(wrong.stderr)")
    }

    @Test func benchTrainMeasuresAGANConfig() throws {
        let r = try LoomBinary.loom(["bench", "train", "--config", TrainingTests.configs + "/dcgan-32.yaml", "--only", "1x1",
                                     "--steps", "1", "--warmup", "1", "train.batch_size=4"])
        #expect(r.status == 0, "\(r.stderr)")
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("RESULT 1x1 ") }
        #expect(line.flatMap { Double($0.split(separator: " ").last!) }.map { $0 > 0 } == true, "\(r.stdout)")
    }
}

/// GAN configs with mistakes: one line naming the key, exit 1, no trap.
@Suite(.serialized) struct GANErrorTests {
    func worker(_ extra: [String], folder: String? = nil) throws -> LoomBinary.Result {
        try LoomBinary.loom(["worker", GANTrainingTests.config] + extra
                            + ["--run-dir", (folder ?? Fixture.folder("gan-errors")) + "/run"])
    }

    func expectOneLineError(_ r: LoomBinary.Result, contains text: String) {
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n").filter { !$0.contains("OPENBLAS_CORETYPE") && !$0.contains("picked its") }
        #expect(lines.count == 1 && lines[0].contains(text), "stderr: \(r.stderr)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Backtrace"))
    }

    @Test func diffusionKeyInAGANConfig() throws {
        expectOneLineError(try worker(["diffusion.timesteps=500"]), contains: "'diffusion.timesteps' does not apply to model.type dcgan")
        expectOneLineError(try worker(["model.base_channels=32"]), contains: "'model.base_channels' does not apply to model.type dcgan")
    }

    @Test func zeroCriticUpdates() throws {
        expectOneLineError(try worker(["gan.n_critic=0"]), contains: "'gan.n_critic' must be between 1 and 100, found 0")
    }

    @Test func conditionalGANOnUnlabelledData() throws {
        let folder = try TrainingTests.stripes(count: 32, size: 28, labels: false)
        let r = try worker(GANTrainingTests.tiny(folder, steps: 2, extra: ["model.num_classes=2"]), folder: folder)
        expectOneLineError(r, contains: "'model.num_classes' is 2 (a conditional model) but the dataset \(folder)/data has no labels")
    }

    @Test func imageSizeTheDCGANCannotBuild() throws {
        expectOneLineError(try worker(["model.image_size=48"]), contains: "'model.image_size' must be 28, 32 or 64, found 48")
    }
}
