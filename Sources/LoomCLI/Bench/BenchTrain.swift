import ArgumentParser
import Foundation
import LoomDistributed
import LoomTensor
import LoomTraining

/// `loom bench train`: images/s of a training config at 1 rank × 1 thread, 1 rank × 2
/// threads and 2 ranks × 1 thread (gradients all-reduced every step), measured in one run,
/// the three set-ups alternating.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Training images/s at 1×1, 1×2 and 2×1 (ranks × threads).")

    @Option(help: "Run config (YAML).")
    var config: String = "configs/ddpm-unet-s.yaml"

    @Option(help: "Timed steps per measurement.")
    var steps = 10

    @Option(help: "Warm-up steps before timing.")
    var warmup = 2

    @Option(help: "Rounds: each round runs the three set-ups once; the best round counts.")
    var rounds = 2

    @Flag(help: "With --only: print where the step's time goes, op by op (forward and backward), from rank 0.")
    var profile = false

    @Option(help: "Measure only this set-up (RANKSxTHREADS, e.g. 2x1); used by the driver.")
    var only: String?

    @Argument(help: "Config overrides key.path=value.")
    var overrides: [String] = []

    func validate() throws {
        try OptionError.check("--steps", steps, in: 1...100_000)
        try OptionError.check("--warmup", warmup, in: 0...100_000)
        try OptionError.check("--rounds", rounds, in: 1...100)
        if let only {
            let parts = only.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 2, let ranks = parts[0], let threads = parts[1], (1...64).contains(ranks), (1...256).contains(threads) else {
                throw OptionError(option: "--only", value: "'\(only)'", expected: "RANKSxTHREADS with 1–64 ranks and 1–256 threads, e.g. 2x1")
            }
        }
        if profile && only == nil {
            throw ValidationError("--profile needs --only RANKSxTHREADS (e.g. --only 1x2 --profile): it profiles one set-up")
        }
    }

    func run() throws {
        let cfg = try RunConfig.load(file: config, overrides: overrides)
        if let only {
            // A measurement process (under mpirun when ranks > 1).
            let parts = only.split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2 else { throw ValidationError("--only takes RANKSxTHREADS, e.g. 2x1") }
            Parallel.setThreads(parts[1])
            let comm = parts[0] > 1 ? try Communicator.world() : nil
            let (ips, table) = try TrainBenchmark.run(config: cfg, communicator: comm, warmup: warmup, steps: steps,
                                                      profile: profile)
            if (comm?.rank ?? 0) == 0 {
                print("RESULT \(only) \(ips)")
                if let table { print(table) }
            }
            return
        }
        let setups = ["1x1", "1x2", "2x1"]
        var best: [String: Double] = [:]
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        for round in 1...rounds {
            for setup in setups {
                var args = ["bench", "train", "--config", config, "--steps", "\(steps)", "--warmup", "\(warmup)", "--only", setup] + overrides
                var exe = me
                if setup.hasPrefix("2x") {
                    guard let mpirun = which("mpirun") else { throw ValidationError("mpirun is not on PATH (openmpi-bin)") }
                    args = ["--allow-run-as-root", "-np", "2", "-x", "OMP_NUM_THREADS=1", "-x", "OPENBLAS_NUM_THREADS=1", me] + args
                    exe = mpirun
                }
                let out = try runCapturing(exe, args)
                guard let line = out.split(separator: "\n").first(where: { $0.hasPrefix("RESULT") }),
                      let ips = Double(line.split(separator: " ").last ?? "") else {
                    throw ValidationError("bench run \(setup) printed no result:\n\(out)")
                }
                let total = setup.hasPrefix("2x") ? 2 * ips : ips
                best[setup] = max(best[setup] ?? 0, total)
                FileHandle.standardError.write(Data("round \(round) \(setup): \(String(format: "%.1f", total)) images/s\n".utf8))
            }
        }
        print("\(config): batch \(cfg.train.batchSize) per process, \(cfg.family.summary), best of \(rounds) rounds × \(steps) steps")
        print("setup (ranks × threads)   images/s total   per process")
        for setup in setups {
            let total = best[setup]!, per = setup.hasPrefix("2x") ? total / 2 : total
            print(setup.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "%14.1f %13.1f", total, per))
        }
        print(String(format: "scaling efficiency 2×1 vs 1×1: %.1f %%", 100 * best["2x1"]! / (2 * best["1x1"]!)))
    }
}

/// Runs a command and returns its standard output; a failure throws with its output.
func runCapturing(_ executable: String, _ arguments: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let out = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0 else { throw ValidationError("\(executable) \(arguments.joined(separator: " ")) failed:\n\(out)") }
    return out
}
