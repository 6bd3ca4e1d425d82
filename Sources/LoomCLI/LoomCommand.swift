import ArgumentParser

/// The `loom` command line.
struct LoomCommand: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "loom",
        abstract: "Distributed data-parallel training of generative image models.",
        version: version,
        subcommands: [Doctor.self, Prepare.self, Worker.self, Sample.self, Reconstruct.self, Inspect.self, Export.self, Bench.self, SelfTest.self]
    )
}
