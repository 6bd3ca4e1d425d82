import Foundation
import Testing

/// `loom worker` on fuzzed but small configs (random picks, seeded, from values at and around
/// each key's limits) for one or two steps: each run exits 0, or 1 with one line on stderr;
/// never a signal (a trap or a crash) and never a hang.
@Suite(.serialized) struct WorkerFuzzTests {
    /// Candidate values per key: in range, at the edges, and combinations that interact.
    static let diffusionValues: [(String, [String])] = [
        ("model.num_heads", ["1", "2", "4", "8"]), ("model.groups", ["1", "2", "4"]),
        ("model.base_channels", ["4", "8", "12", "16"]), ("model.channel_mult", ["[1]", "[1,2]", "[2,1]", "[1,1,1]"]),
        ("model.num_res_blocks", ["1", "2"]), ("model.attention_resolutions", ["[]", "[8]", "[4]", "[2]"]),
        ("model.dropout", ["0", "0.5", "0.99"]), ("model.num_classes", ["0", "2", "100000"]),
        ("diffusion.timesteps", ["1", "2", "10", "100"]), ("diffusion.schedule", ["linear", "cosine"]),
        ("diffusion.prediction", ["epsilon", "v", "x0"]), ("diffusion.loss_weighting", ["uniform", "min_snr"]),
        ("diffusion.offset_noise", ["0", "1"]), ("diffusion.beta_start", ["1e-300", "0.02"]), ("diffusion.label_dropout", ["0", "1"]),
        ("sample.steps", ["1", "2"]), ("sample.sampler", ["ddpm", "ddim", "dpm_solver"]), ("sample.every", ["1"]),
        ("sample.n", ["1", "3"]), ("sample.guidance", ["0", "100"]), ("sample.eta", ["0", "1"]),
        ("optimizer.type", ["adamw", "adam", "sgd", "rmsprop"]), ("optimizer.lr", ["1e-30", "1000"]),
        ("optimizer.betas", ["[0,0]", "[0.999999,0.999999]"]), ("optimizer.eps", ["1e-30", "1e30"]),
        ("schedule.type", ["constant", "linear_warmup", "cosine"]), ("schedule.warmup_steps", ["0", "1000000000"]),
        ("train.batch_size", ["1", "3", "7"]), ("train.grad_accum", ["1", "3"]), ("train.clip_grad_norm", ["0", "1e-300"]),
        ("ema.decay", ["0", "1"]), ("ema.warmup", ["ramp", "none", "steps"]), ("ema.start_step", ["1000000000"]),
        ("checkpoint.every", ["1"]), ("checkpoint.keep_last", ["1"]), ("logging.every", ["1", "1000000000"]),
        ("threads", ["1", "2"]), ("conv_algorithm", ["auto", "direct"]), ("seed", ["-1", "9223372036854775807"]),
        ("data.random_flip", ["true"]), ("train.overlap_allreduce", ["true"]), ("train.bucket_mb", ["1", "4096"]),
    ]
    static let ganValues: [(String, [String])] = [
        ("gan.loss", ["bce", "hinge", "wgan", "wgan_gp"]), ("model.d_norm", ["batch", "none", "layer"]),
        ("model.spectral_norm", ["true", "false"]), ("model.num_classes", ["0", "2"]), ("model.d_conditioning", ["projection", "channels"]),
        ("model.class_embedding", ["1", "3"]), ("gan.n_critic", ["1", "3"]), ("gan.r1_gamma", ["0", "1"]), ("gan.r1_every", ["1", "2"]),
        ("gan.lr_g", ["0", "1e-30"]), ("gan.clip", ["1e-6", "1000"]), ("gan.gp_lambda", ["0", "1e6"]),
        ("model.z_dim", ["1", "2"]), ("model.g_channels", ["1", "2", "8"]), ("model.d_channels", ["1", "3"]),
        ("train.batch_size", ["1", "2"]), ("optimizer.type", ["adam", "rmsprop", "sgd"]), ("ema.decay", ["0", "1"]),
        ("sample.every", ["1"]), ("sample.n", ["1", "5"]), ("train.sync_batch_norm", ["true"]),
    ]

    /// `count` override sets of 3 to 8 random keys each, from `rng`.
    static func picks(_ table: [(String, [String])], count: Int, seed: UInt64) -> [[String]] {
        var state = seed
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        return (0..<count).map { _ in
            (0..<(3 + next(6))).map { _ in let (k, vs) = table[next(table.count)]; return "\(k)=\(vs[next(vs.count)])" }
        }
    }

    /// Runs each set and checks the outcome; returns the exit statuses.
    func run(_ config: String, base: [String], sets: [[String]], folder: String) throws -> [Int32] {
        var statuses: [Int32] = []
        for (i, set) in sets.enumerated() {
            let r = try LoomBinary.loom(["worker", config] + base + set + ["--run-dir", folder + "/run-\(i)"])
            #expect(!r.signaled, "\(set): killed by signal \(r.status)\n\(r.stderr)")
            #expect(r.status == 0 || r.status == 1, "\(set): exit \(r.status)\n\(r.stderr)")
            if r.status == 1 { #expect(r.stderrLines.count == 1, "\(set): stderr is not one line:\n\(r.stderr)") }
            if r.status == 0 { #expect(r.stdout.contains("step "), "\(set): no step line:\n\(r.stdout)") }
            print("worker fuzz \(set.joined(separator: " ")) → exit \(r.status)\(r.status == 0 ? "" : ": " + r.stderr.trimmingCharacters(in: .newlines))")
            statuses.append(r.status)
        }
        return statuses
    }

    @Test func diffusionConfigs() throws {
        let folder = try TrainingTests.stripes(count: 64)
        defer { Fixture.remove(folder) }
        let base = TrainingTests.tiny(folder, steps: 2) + ["checkpoint.every=2"]
        let statuses = try run(TrainingTests.configs + "/ddpm-fashion.yaml", base: base,
                               sets: Self.picks(Self.diffusionValues, count: 30, seed: 41), folder: folder)
        #expect(statuses.contains(0), "no fuzzed config trained: \(statuses)")
    }

    @Test func ganConfigs() throws {
        let folder = try TrainingTests.stripes(count: 32, size: 28)
        defer { Fixture.remove(folder) }
        let base = GANTrainingTests.tiny(folder, steps: 1)
        let statuses = try run(GANTrainingTests.config, base: base,
                               sets: Self.picks(Self.ganValues, count: 20, seed: 43), folder: folder)
        #expect(statuses.contains(0), "no fuzzed config trained: \(statuses)")
    }
}
