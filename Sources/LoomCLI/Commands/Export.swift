import ArgumentParser
import Foundation
import LoomStorage

/// `loom export CKPT OUT`: the EMA weights and config only, for sampling.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a small file with just a checkpoint's EMA weights (under /ema) and its config.",
        discussion: "The checkpoint is verified first; the output is written beside itself and renamed into place.")

    @Argument(help: "The checkpoint (.h5).")
    var checkpoint: String

    @Argument(help: "The output file (.h5).")
    var output: String

    @Option(help: "The network to export (default: ema, else generator_ema).")
    var network: String?

    @Flag(help: "Replace an existing output file.")
    var overwrite = false

    func run() throws {
        do {
            let source = URL(fileURLWithPath: checkpoint).lastPathComponent == CheckpointStore.latestName
                ? try CheckpointStore.resolve(checkpoint) : checkpoint
            let state = try CheckpointFile.exportEMA(from: source, to: output, network: network, overwrite: overwrite)
            let tensors = state.networks[0].tensors
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: output))?[.size] as? Int) ?? 0
            print("exported \(state.metadata["exported_network"] ?? "ema") of step \(state.step): \(grouped(state.parameterCount("ema"))) "
                  + "parameters in \(tensors.count) tensors to \(output) (\(megabytes(bytes)))")
        } catch let error as StorageError {
            FileHandle.standardError.write(Data("loom export: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
