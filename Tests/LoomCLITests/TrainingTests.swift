import Foundation
import LoomStorage
import Testing

/// End-to-end training through the built binary: a tiny class-conditional DDPM on 8×8
/// images of two classes (horizontal vs vertical stripes).
@Suite(.serialized) struct TrainingTests {
    /// A dataset folder with `count` `size`×`size` images: class 0 horizontal stripes, class 1
    /// vertical, each with a random phase and some pixel noise (without labels when `labels` is false).
    static func stripes(count: Int = 256, size: Int = 8, labels withLabels: Bool = true) throws -> String {
        let folder = Fixture.folder("training-stripes")
        var pixels = [UInt8](), labels = [UInt8]()
        var rng: UInt64 = 12345
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        for i in 0..<count {
            let label = i % 2, phase = Int(next() % 2)
            for y in 0..<size {
                for x in 0..<size {
                    let on = ((label == 0 ? y : x) + phase) % 2 == 0
                    let noise = Int(next() % 40)
                    pixels.append(UInt8(on ? 215 + noise : noise))
                }
            }
            labels.append(UInt8(label))
        }
        try IDX.write(path: folder + "/images.idx", array: IDXArray(dims: [count, size, size], bytes: pixels), gzip: false)
        try IDX.write(path: folder + "/labels.idx", array: IDXArray(dims: [count], bytes: labels), gzip: false)
        let r = try LoomBinary.loom(["prepare", "idx", "--images", folder + "/images.idx"]
                                    + (withLabels ? ["--labels", folder + "/labels.idx"] : [])
                                    + ["--quiet", "--overwrite", folder + "/data"])
        guard r.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["stderr": r.stderr]) }
        return folder
    }

    /// The repository's configs folder.
    static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("configs").path

    /// Overrides for a tiny conditional U-Net on the stripes.
    static func tiny(_ folder: String, steps: Int, extra: [String] = []) -> [String] {
        ["model.image_size=8", "model.base_channels=8", "model.channel_mult=[1,2]", "model.num_res_blocks=1",
         "model.attention_resolutions=[4]", "model.num_heads=2", "model.groups=4", "model.num_classes=2",
         "data.path=\(folder)/data", "train.batch_size=16", "train.max_steps=\(steps)", "optimizer.lr=0.002",
         "diffusion.timesteps=100", "logging.every=10", "sample.every=0", "sample.n=8", "sample.steps=10",
         "checkpoint.every=50", "ema.decay=0.99", "ema.warmup=ramp", "train.check_replicas_every=25"] + extra
    }

    static func losses(_ run: String) throws -> [(step: Int, loss: Double)] {
        let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        return text.split(separator: "\n").compactMap {
            guard let o = try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any],
                  let s = o["step"] as? Int, let l = o["loss"] as? Double else { return nil }
            return (s, l)
        }
    }

    @Test func tinyDDPMLearnsUnderTwoRanks() throws {
        let folder = try Self.stripes()
        let run = folder + "/run"
        let r = try LoomBinary.mpirun(ranks: 2, ["worker", Self.configs + "/ddpm-fashion.yaml"] + Self.tiny(folder, steps: 300)
                                      + ["--run-dir", run])
        #expect(r.status == 0, "\(r.stderr)")
        let l = try Self.losses(run)
        #expect(l.count >= 25, "metrics.jsonl has \(l.count) rows")
        let early = l.prefix(3).map(\.loss).reduce(0, +) / 3, late = l.suffix(5).map(\.loss).reduce(0, +) / 5
        #expect(late < 0.5 * early, "loss fell only from \(early) to \(late)")
        #expect(r.stdout.contains("step 300/300"))
        #expect(FileManager.default.fileExists(atPath: run + "/checkpoints/latest"))

        // Samples from the trained checkpoint: right shape and range, one PNG grid.
        let out = folder + "/grid.png"
        let s = try LoomBinary.loom(["sample", run + "/checkpoints/latest", "--sampler", "ddim", "--steps", "10", "--n", "8",
                                     "--guidance", "2", "--class", "1", out, "--raw", folder + "/raw.h5"])
        #expect(s.status == 0, "\(s.stderr)")
        let grid = try PNG.read(path: out)
        #expect(grid.channels == 1 && grid.width > 8 && grid.height > 8)
        // The `latest` pointer works for inspect and export too, and an export samples alike.
        let inspect = try LoomBinary.loom(["inspect", run + "/checkpoints/latest"])
        #expect(inspect.status == 0 && inspect.stdout.contains("step 300"), "\(inspect.stderr)")
        let export = try LoomBinary.loom(["export", run + "/checkpoints/latest", folder + "/ema.h5"])
        #expect(export.status == 0, "\(export.stderr)")
        let fromExport = try LoomBinary.loom(["sample", folder + "/ema.h5", folder + "/grid2.png", "--n", "4", "--steps", "5"])
        #expect(fromExport.status == 0, "\(fromExport.stderr)")

        let raw = try H5File.open(folder + "/raw.h5")
        #expect(try raw.root.openDataset("samples").shape == [8, 8, 8, 1])
        let samples = try raw.root.read("samples", as: Float.self)
        // The sampler clamps to [-1, 1], so the range says nothing; the samples must not be
        // degenerate: most values inside the range (not pinned at a bound) and not constant.
        #expect(samples.count == 8 * 64)
        #expect(samples.filter { abs($0) < 0.999 }.count > samples.count / 2, "\(samples.prefix(16))")
        #expect(Set(samples).count > 64)

        // Editing the data set's first 4 images: inpainting keeps the left half bit for bit
        // and generates the right half; strength 0 returns the images themselves.
        let data = try ShardedDataset(folder: folder + "/data", split: "train")
        var bytes = [UInt8](repeating: 0, count: 4 * 64)
        try bytes.withUnsafeMutableBytes { try data.read(0..<4, into: $0.baseAddress!) }
        let originals = bytes.map { Float($0) / 127.5 - 1 }
        for (extra, name) in [(["--mask", "left", "--resample", "2", "--sampler", "ddpm"], "inpaint"), (["--strength", "0"], "same")] {
            let e = try LoomBinary.loom(["sample", run + "/checkpoints/latest", folder + "/\(name).png", "--init", folder + "/data",
                                         "--n", "4", "--steps", "10", "--raw", folder + "/\(name).h5"] + extra)
            #expect(e.status == 0, "\(e.stderr)")
            let edited = try H5File.open(folder + "/\(name).h5").root.read("samples", as: Float.self)
            #expect(edited.count == originals.count)
            let left = (0..<originals.count).filter { $0 % 8 < 4 }, right = (0..<originals.count).filter { $0 % 8 >= 4 }
            if name == "same" {
                #expect(edited == originals)
            } else {
                #expect(left.allSatisfy { edited[$0] == originals[$0] })
                #expect(right.contains { edited[$0] != originals[$0] })
            }
        }
        // The grid written above comes back as --init: 8 images in 3×3 tiles of 8×8, the ninth
        // blank, so --n 8 takes the images.
        let again = try LoomBinary.loom(["sample", run + "/checkpoints/latest", folder + "/again.png", "--init", out,
                                         "--n", "8", "--strength", "0.3", "--steps", "10", "--raw", folder + "/again.h5"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try H5File.open(folder + "/again.h5").root.openDataset("samples").shape == [8, 8, 8, 1])
        // Mistakes are one line and exit 1.
        for (args, message) in [(["--strength", "0.5"], "--strength edits images: give them with --init"),
                                (["--init", folder + "/data", "--strength", "2"], "--strength must be a number between 0.0 and 1.0, found 2.0"),
                                (["--init", folder + "/data", "--mask", "middle"], "--mask must be left, right, top, bottom, center or a PNG file"),
                                (["--init", folder + "/data", "--resample", "3", "--sampler", "dpm_solver"], "--resample needs the ddpm or ddim sampler"),
                                (["--init", folder + "/grid.png", "--mask", folder + "/nothing.png"], "nothing.png"),
                                (["--init", folder + "/nowhere"], "--init \(folder)/nowhere: no such file or folder")] {
            let bad = try LoomBinary.loom(["sample", run + "/checkpoints/latest", folder + "/bad.png"] + args)
            #expect(bad.status == 1, "\(args): \(bad.stderr)")
            #expect(bad.stderr.contains(message), "\(args): \(bad.stderr)")
            #expect(bad.stderr.split(separator: "\n").count == 1, "\(args): \(bad.stderr)")
        }
    }
}

/// Exact resume: N steps straight equal N/2 steps, stop, resume, N/2 more — bitwise.
@Suite(.serialized) struct ResumeTests {
    /// Overrides for a tiny class-conditional DiT on the stripes (8×8, patch 2, width 16).
    static func tinyDiT(_ folder: String, steps: Int) -> [String] {
        ["model.image_size=8", "model.patch_size=2", "model.hidden_size=16", "model.depth=2", "model.num_heads=2",
         "model.num_classes=2", "data.path=\(folder)/data", "train.batch_size=8", "train.max_steps=\(steps)",
         "optimizer.lr=0.002", "diffusion.timesteps=100", "logging.every=10", "sample.every=0", "sample.n=8",
         "sample.steps=10", "checkpoint.every=1000", "ema.decay=0.99", "ema.warmup=ramp", "train.check_replicas_every=10"]
    }

    func train(_ folder: String, run: String, ranks: Int, steps: Int, resume: Bool, dit: Bool = false) throws {
        let args = ["worker", TrainingTests.configs + (dit ? "/dit-s.yaml" : "/ddpm-fashion.yaml")]
            + (dit ? Self.tinyDiT(folder, steps: steps)
                   : TrainingTests.tiny(folder, steps: steps, extra: ["checkpoint.every=1000", "sample.every=0", "model.dropout=0.1"]))
            + ["--run-dir", run, "--resume", resume ? "auto" : "none"]
        let r = try LoomBinary.mpirun(ranks: ranks, args)
        #expect(r.status == 0, "\(r.stderr)")
        if resume { #expect(r.stdout.contains("resuming from")) }
    }

    @Test(arguments: [1, 2]) func stopAndResumeIsBitwiseIdentical(ranks: Int) throws {
        let folder = try TrainingTests.stripes(count: 96)
        try train(folder, run: folder + "/straight", ranks: ranks, steps: 40, resume: false)
        try train(folder, run: folder + "/resumed", ranks: ranks, steps: 20, resume: false)
        try train(folder, run: folder + "/resumed", ranks: ranks, steps: 40, resume: true)
        let a = try CheckpointStore.read(folder + "/straight/checkpoints/latest")
        let b = try CheckpointStore.read(folder + "/resumed/checkpoints/latest")
        #expect(a.step == 40 && b.step == 40)
        #expect(a.bitwiseDifference(from: b) == nil, "\(a.bitwiseDifference(from: b) ?? "")")
        // And the run really moved: the weights differ from the halfway checkpoint.
        let half = try CheckpointStore.read(folder + "/resumed/checkpoints/step-00000020.h5")
        #expect(half.bitwiseDifference(from: b) != nil)
    }

    /// The same for a DiT on 2 ranks (label dropout, EMA and every rank's noise resume exactly).
    @Test func ditStopAndResumeIsBitwiseIdentical() throws {
        let folder = try TrainingTests.stripes(count: 64)
        try train(folder, run: folder + "/dit-straight", ranks: 2, steps: 30, resume: false, dit: true)
        try train(folder, run: folder + "/dit-resumed", ranks: 2, steps: 15, resume: false, dit: true)
        try train(folder, run: folder + "/dit-resumed", ranks: 2, steps: 30, resume: true, dit: true)
        let a = try CheckpointStore.read(folder + "/dit-straight/checkpoints/latest")
        let b = try CheckpointStore.read(folder + "/dit-resumed/checkpoints/latest")
        #expect(a.step == 30 && b.step == 30)
        #expect(a.bitwiseDifference(from: b) == nil, "\(a.bitwiseDifference(from: b) ?? "")")
        let half = try CheckpointStore.read(folder + "/dit-resumed/checkpoints/step-00000015.h5")
        #expect(half.bitwiseDifference(from: b) != nil)
        // The DiT's own weights are in the file under the reference's names.
        #expect(b.network("ema")?.contains { $0.0 == "blocks.1.adaLN_modulation.1.weight" } == true)
    }

    /// Threads within a rank change nothing: the same run at 1 and 2 threads ends bitwise
    /// equal (16 base channels, so the 3×3 layers take Winograd; batch shares of 8 images).
    @Test func threadCountDoesNotChangeTheRun() throws {
        let folder = try TrainingTests.stripes(count: 96)
        for threads in [1, 2] {
            let args = ["worker", TrainingTests.configs + "/ddpm-fashion.yaml"]
                + TrainingTests.tiny(folder, steps: 12, extra: ["model.base_channels=16", "threads=\(threads)",
                                                                "checkpoint.every=1000", "model.dropout=0.1"])
                + ["--run-dir", folder + "/threads\(threads)"]
            let r = try LoomBinary.mpirun(ranks: 1, args)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let one = try CheckpointStore.read(folder + "/threads1/checkpoints/latest")
        var two = try CheckpointStore.read(folder + "/threads2/checkpoints/latest")
        #expect(one.step == 12 && two.step == 12)
        #expect(two.configYAML.contains("threads: 2"))
        two.configYAML = one.configYAML  // the one intended difference
        #expect(one.bitwiseDifference(from: two) == nil, "\(one.bitwiseDifference(from: two) ?? "")")
    }

    @Test func resumeWithAnotherWorldSizeSaysSo() throws {
        let folder = try TrainingTests.stripes(count: 96)
        try train(folder, run: folder + "/run", ranks: 2, steps: 20, resume: false)
        let r = try LoomBinary.mpirun(ranks: 1, ["worker", TrainingTests.configs + "/ddpm-fashion.yaml"]
            + TrainingTests.tiny(folder, steps: 30) + ["--run-dir", folder + "/run", "--resume", "auto"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("the checkpoint was written by 2 rank(s), this run has 1"))
        #expect(try CheckpointStore.read(folder + "/run/checkpoints/latest").step == 30)
    }

    @Test func corruptNewestCheckpointIsSkipped() throws {
        let folder = try TrainingTests.stripes(count: 96)
        let run = folder + "/run"
        let args = ["worker", TrainingTests.configs + "/ddpm-fashion.yaml"] + TrainingTests.tiny(folder, steps: 20)
            + ["checkpoint.every=10", "--run-dir", run]
        #expect(try LoomBinary.mpirun(ranks: 1, args).status == 0)
        // Flip bytes in the middle of the newest file.
        let newest = run + "/checkpoints/step-00000020.h5"
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: newest))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size / 2)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 64))
        try handle.close()
        let r = try LoomBinary.mpirun(ranks: 1, args.map { $0 == "train.max_steps=20" ? "train.max_steps=25" : $0 } + ["--resume", "auto"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("step-00000020.h5 skipped"))
        #expect(r.stdout.contains("resuming from") && r.stdout.contains("step-00000010.h5"))
    }
}

/// User mistakes in `loom worker`: one line naming the key or file, exit 1, no trap.
@Suite(.serialized) struct WorkerErrorTests {
    func worker(_ extra: [String]) throws -> LoomBinary.Result {
        try LoomBinary.loom(["worker", TrainingTests.configs + "/ddpm-fashion.yaml"] + extra
                            + ["--run-dir", Fixture.folder("worker-errors") + "/run"])
    }

    func expectOneLineError(_ r: LoomBinary.Result, contains text: String) {
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n").filter { !$0.contains("OPENBLAS_CORETYPE") }
        #expect(lines.count == 1 && lines[0].contains(text), "stderr: \(r.stderr)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Backtrace"))
    }

    @Test func typoedKeyGetsASuggestion() throws {
        expectOneLineError(try worker(["optimizer.lrr=1e-4"]), contains: "unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'?")
    }

    @Test func wrongTypeNamesTheKey() throws {
        expectOneLineError(try worker(["train.batch_size=lots"]), contains: "'train.batch_size' must be an integer, found 'lots'")
    }

    @Test func missingDatasetNamesTheFolder() throws {
        expectOneLineError(try worker(["data.path=/nonexistent/fashion"]), contains: "/nonexistent/fashion")
    }

    @Test func imageSizeDisagreeingWithTheDatasetIsReported() throws {
        let folder = try TrainingTests.stripes(count: 32)
        let r = try worker(TrainingTests.tiny(folder, steps: 5) + ["model.image_size=16", "model.attention_resolutions=[8]"])
        expectOneLineError(r, contains: "sample_shape")
        #expect(r.stderr.contains("[16, 16, 1]") && r.stderr.contains("[8, 8, 1]"))
    }

    /// A size no machine can hold ends in one line and exit 1 at load, before any allocation:
    /// 10¹² images is above train.batch_size's bound; 65536 W1 images need about 10¹² bytes of
    /// activations (ModelSize), more than any machine this runs on.
    @Test func impossibleMemoryNeedIsOneLine() throws {
        let bench = ["bench", "train", "--only", "1x1", "--steps", "1", "--warmup", "0"]
        expectOneLineError(try LoomBinary.loom(bench + ["train.batch_size=1000000000000"]),
                           contains: "loom: configs/ddpm-unet-s.yaml: 'train.batch_size' must be between 1 and 65536, found 1000000000000")
        let r = try LoomBinary.loom(bench + ["train.batch_size=65536"])
        expectOneLineError(r, contains: "'train.batch_size' make a model that needs about")
        #expect(r.stderr.contains("more than this machine's") && r.stderr.contains("lower them"))
    }
}

