import Foundation
import LoomStorage
import Testing

/// Every user input outside config load that reaches a size, an index or a file (loom sample,
/// prepare, bench, inspect, export options and paths, override strings) ends in one line on
/// stderr and exit status 1: never a trap, a crash, usage text or another status.
@Suite(.serialized) struct CLIInputTests {
    /// Runs `arguments` and checks the outcome: exit 1, one stderr line containing `expected`.
    func refuses(_ arguments: [String], _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try LoomBinary.loom(arguments)
        print("cli input \(arguments.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")) → exit \(r.status)\(r.signaled ? " (signal)" : ""): \(r.stderr.trimmingCharacters(in: .newlines))")
        #expect(!r.signaled && r.status == 1, "\(arguments): exit \(r.status)\n\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderrLines.count == 1 && r.stderr.contains(expected), "\(arguments): expected one line with '\(expected)', got:\n\(r.stderr)",
                sourceLocation: sourceLocation)
    }

    /// A one-step run of `config` with `overrides`; returns its `latest` checkpoint.
    func checkpoint(_ config: String, _ overrides: [String], folder: String) throws -> String {
        let run = folder + "/run"
        let r = try LoomBinary.loom(["worker", config] + overrides + ["checkpoint.every=1", "--run-dir", run])
        try #require(r.status == 0, "\(r.stderr)")
        return run + "/checkpoints/latest"
    }

    @Test func sampleOptions() throws {
        let folder = try TrainingTests.stripes(count: 32)
        defer { Fixture.remove(folder) }
        let ckpt = try checkpoint(TrainingTests.configs + "/ddpm-fashion.yaml", TrainingTests.tiny(folder, steps: 1), folder: folder)
        let out = folder + "/x.png"
        try refuses(["sample", ckpt, out, "--n", "0"], "--n must be between 1 and 10000, found 0")
        try refuses(["sample", ckpt, out, "--n=-1"], "--n must be between 1 and 10000, found -1")
        try refuses(["sample", ckpt, out, "--n", "4611686018427387904"], "--n must be between 1 and 10000, found 4611686018427387904")
        try refuses(["sample", ckpt, out, "--n", "99999999999999999999"], "The value '99999999999999999999' is invalid for '--n <n>'")
        try refuses(["sample", ckpt, out, "--n", "abc"], "The value 'abc' is invalid for '--n <n>'")
        try refuses(["sample", ckpt, out, "--class=-1"], "--class must be in 0..<2 (the model's classes), found -1")
        try refuses(["sample", ckpt, out, "--class", "2"], "--class must be in 0..<2 (the model's classes), found 2")
        try refuses(["sample", ckpt, out, "--class", "9223372036854775807"], "--class must be in 0..<2")
        try refuses(["sample", ckpt, out, "--steps", "0"], "--steps must be between 1 and 100000, found 0")
        try refuses(["sample", ckpt, out, "--steps", "101"], "--steps must be at most the model's diffusion.timesteps (100), found 101")
        try refuses(["sample", ckpt, out, "--steps", "4611686018427387904"], "--steps must be between 1 and 100000")
        try refuses(["sample", ckpt, out, "--guidance", "nan"], "--guidance must be a number between 0.0 and 100.0, found nan")
        try refuses(["sample", ckpt, out, "--guidance", "inf"], "--guidance must be a number between 0.0 and 100.0, found inf")
        try refuses(["sample", ckpt, out, "--guidance", "1e308"], "--guidance must be a number between 0.0 and 100.0")
        try refuses(["sample", ckpt, out, "--guidance=-1"], "--guidance must be a number between 0.0 and 100.0, found -1.0")
        try refuses(["sample", ckpt, out, "--eta", "nan"], "--eta must be a number between 0.0 and 1.0, found nan")
        try refuses(["sample", ckpt, out, "--eta", "2"], "--eta must be a number between 0.0 and 1.0, found 2.0")
        try refuses(["sample", ckpt, out, "--sampler", "foo"], "--sampler must be one of ddpm, ddim, dpm_solver, found 'foo'")
        try refuses(["sample", ckpt, out, "--interpolate", "3"], "--interpolate does not apply to a diffusion model")
        try refuses(["sample", ckpt, out, "--threads", "0"], "--threads must be between 1 and 256, found 0")
        try refuses(["sample", ckpt, out, "--threads", "100000"], "--threads must be between 1 and 256, found 100000")
        try refuses(["sample", ckpt, out, "--seed=-1"], "The value '-1' is invalid for '--seed <seed>'")
        try refuses(["sample", ckpt, out, "--bogus"], "Unknown option '--bogus'")
        try refuses(["sample", ckpt], "give an output PNG, --raw OUT.h5, or both")
        try refuses(["sample", ckpt, "/nonexistent/dir/x.png", "--n", "1", "--steps", "1"], "/nonexistent/dir/x.png")
        try refuses(["sample", ckpt, out, "--n", "1", "--steps", "1", "--raw", "/nonexistent/dir/raw.h5"], "/nonexistent/dir/raw.h5")
        try refuses(["sample", folder + "/none.h5", out], folder + "/none.h5")
        try refuses(["sample", folder, out], folder)
        try refuses(["sample", TrainingTests.configs + "/ddpm-fashion.yaml", out], "ddpm-fashion.yaml")
    }

    @Test func ganSampleOptions() throws {
        let folder = try TrainingTests.stripes(count: 16, size: 28)
        defer { Fixture.remove(folder) }
        let ckpt = try checkpoint(GANTrainingTests.config, GANTrainingTests.tiny(folder, steps: 1), folder: folder)
        let out = folder + "/x.png"
        try refuses(["sample", ckpt, out, "--interpolate", "1"], "--interpolate must be between 2 and 1000, found 1")
        try refuses(["sample", ckpt, out, "--interpolate", "4611686018427387904"], "--interpolate must be between 2 and 1000")
        try refuses(["sample", ckpt, out, "--n", "5000", "--interpolate", "1000"], "--n × --interpolate must be between 2 and 10000, found 5000000")
        try refuses(["sample", ckpt, out, "--class", "0"], "--class must be absent: this model is unconditional, found 0")
        try refuses(["sample", ckpt, out, "--steps", "3"], "--steps does not apply to a GAN")
    }

    @Test func prepareOptions() throws {
        let folder = Fixture.folder()
        defer { Fixture.remove(folder) }
        let images = folder + "/i.idx"
        try IDX.write(path: images, array: IDXArray(dims: [4, 2, 2], bytes: [UInt8](repeating: 9, count: 16)), gzip: false)
        let out = folder + "/ds"
        let idx = ["prepare", "idx", "--images", images, out, "--quiet"]
        try refuses(["prepare", "idx", "--images", folder + "/none.idx", out], folder + "/none.idx")
        try refuses(idx + ["--size", "0"], "--size must be between 1 and 4096, found 0")
        try refuses(idx + ["--size", "4611686018427387904"], "--size must be between 1 and 4096")
        try refuses(idx + ["--shards", "0"], "--shards must be between 1 and 100000, found 0")
        try refuses(idx + ["--per-shard=-1"], "--per-shard must be between 1 and 1000000000, found -1")
        try refuses(idx + ["--compression", "10"], "--compression must be between 0 and 9, found 10")
        try refuses(idx + ["--chunk", "0"], "--chunk must be between 1 and 1000000000, found 0")
        try refuses(idx + ["--val-fraction", "nan"], "--val-fraction must be a number in [0, 1), found nan")
        try refuses(idx + ["--val-fraction", "1"], "--val-fraction must be a number in [0, 1), found 1.0")
        try refuses(idx + ["--fit", "stretch"], "--fit must be one of crop, pad, found 'stretch'")
        try refuses(["prepare", "png", folder, out, "--channels", "2"], "--channels must be 1 or 3, found 2")
        try refuses(["prepare", "png", folder + "/none", out], folder + "/none")
        try refuses(["prepare", "cifar10", folder, out], folder)
        try refuses(["prepare", "idx", "--images", images, "--labels", images, out, "--quiet"], images)
        try refuses(["prepare", "idx", "--images", images, images + "/ds", "--quiet"], images)
    }

    @Test func benchOptionsAndFiles() throws {
        let folder = Fixture.folder()
        defer { Fixture.remove(folder) }
        try refuses(["bench", "ops", "--repeats", "0"], "--repeats must be between 1 and 10000, found 0")
        try refuses(["bench", "ops", "--threads", "0"], "--threads must be between 1 and 256, found 0")
        try refuses(["bench", "allreduce", "--max-mb", "4611686018427387904"], "--max-mb must be between 1 and 4096")
        try refuses(["bench", "allreduce", "--seconds", "nan"], "--seconds must be a number between 0.001 and 3600.0, found nan")
        try refuses(["bench", "allreduce", "--rounds", "0"], "--rounds must be between 1 and 1000, found 0")
        try refuses(["bench", "checkpoint", "--base", "100000"], "--base must be between 1 and 512, found 100000")
        try refuses(["bench", "checkpoint", "--repeats=-1"], "--repeats must be between 1 and 10000, found -1")
        try refuses(["bench", "data", "--batch", "0"], "--batch must be between 1 and 65536, found 0")
        try refuses(["bench", "data", "--residency", "disk"], "--residency must be memory, stream or both, found 'disk'")
        try refuses(["bench", "data", "--fashion", folder + "/none"], folder + "/none")
        try refuses(["bench", "train", "--steps", "0"], "--steps must be between 1 and 100000, found 0")
        try refuses(["bench", "train", "--only", "3x"], "--only must be RANKSxTHREADS")
        try refuses(["bench", "train", "--only", "1x0"], "--only must be RANKSxTHREADS")
        try refuses(["bench", "train", "--config", folder + "/none.yaml"], folder + "/none.yaml: cannot read the config: no such file")
        try refuses(["bench", "train", "--config", TrainingTests.configs + "/dcgan-32.yaml", "model.g_channels=0"], "'model.g_channels' must be between 1 and 1024, found 0")
    }

    @Test func filesAndOverrides() throws {
        let folder = Fixture.folder()
        defer { Fixture.remove(folder) }
        let text = folder + "/text.h5"
        try "not hdf5".write(toFile: text, atomically: true, encoding: .utf8)
        for command in ["inspect", "export"] {
            let extra = command == "export" ? [folder + "/out.h5"] : []
            try refuses([command, folder + "/none.h5"] + extra, folder + "/none.h5")
            try refuses([command, text] + extra, text)
            try refuses([command, folder] + extra, folder)
        }
        let config = TrainingTests.configs + "/ddpm-fashion.yaml"
        try refuses(["worker", config, "lr"], "override 'lr' must look like key.path=value")
        try refuses(["worker", config, "=1"], "override '=1' must look like key.path=value")
        try refuses(["worker", config, "a..b=1"], "override 'a..b=1' must look like key.path=value")
        try refuses(["worker", config, "model=[1"], "'model' must be a mapping of keys, found '[1'")
        try refuses(["worker", config, "train.batch_size=1=2"], "'train.batch_size' must be an integer, found '1=2'")
        try refuses(["worker", config, "train.batch_size.x=1"], "'train.batch_size' must be an integer, found a mapping")
        try refuses(["worker", config, "train.batch_size=*a"], "'train.batch_size' must be an integer, found '*a'")
        try refuses(["worker", config, "train.batch_size="], "'train.batch_size' must be an integer, found ''")
        try refuses(["worker", config, "--resume", "yes"], "--resume must be 'auto' or 'none', found 'yes'")
        try refuses(["worker", folder + "/none.yaml"], folder + "/none.yaml: cannot read the config: no such file")
        try refuses(["worker", text], text)
        try refuses(["selftest", "memory", "model.base_channels=4096"], "make a model that needs about")
    }
}
