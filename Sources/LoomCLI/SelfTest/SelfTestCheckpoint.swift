import ArgumentParser
import Foundation
import LoomStorage

/// `loom selftest checkpoint-crash RUN`: saves checkpoint 100, then saves checkpoint 200,
/// during which the test hook (`LOOM_TEST_ABORT_CHECKPOINT_AFTER_BYTES`, with
/// `LOOM_TEST_ABORT_CHECKPOINT_AT_STEP=200`) aborts the process mid-write.
struct SelfTestCheckpointCrash: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "checkpoint-crash")

    @Argument(help: "The run folder (checkpoints go to RUN/checkpoints).")
    var runFolder: String

    @Option(help: "U-Net base channels of the synthetic state (32 is W1; 8 makes a 1.6 MB file).")
    var base = 8

    func run() throws {
        let store = try CheckpointStore(run: URL(fileURLWithPath: runFolder))
        let first = SyntheticCheckpoint.state(step: 100, base: base)
        let url = try store.save(first)
        let checksum = XXH64.hex(CheckpointFile.checksum(of: first.network("model")!))
        print("saved step 100 to \(url.lastPathComponent), model checksum xxh64:\(checksum)")
        fflush(stdout)
        try store.save(SyntheticCheckpoint.state(step: 200, base: base))
        print("saved step 200")
    }
}
