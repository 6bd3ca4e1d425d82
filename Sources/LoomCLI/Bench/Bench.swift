import ArgumentParser

/// `loom bench …`: speed figures, always measured side by side in one run (release builds).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (run release builds; speed goals live here, not in unit tests).",
        subcommands: [BenchOps.self, BenchTrain.self, BenchAllReduce.self, BenchData.self, BenchCheckpoint.self])
}
