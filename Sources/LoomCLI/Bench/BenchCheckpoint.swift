import ArgumentParser
import Foundation
import LoomStorage

/// `loom bench checkpoint`: how long a W1 checkpoint write stalls training, in each mode.
struct BenchCheckpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Time a W1-sized checkpoint save (model + EMA + Adam, 26 MB) in the foreground and in the background.")

    @Option(help: "Folder to write into (default: a temporary folder; pass one on the file system a run uses).")
    var folder: String?

    @Option(help: "Saves per mode.")
    var repeats = 5

    @Option(help: "U-Net base channels (32 is W1, 1.62 M parameters).")
    var base = 32

    func validate() throws {
        try OptionError.check("--repeats", repeats, in: 1...10_000)
        try OptionError.check("--base", base, in: 1...512)
    }

    func run() throws {
        let scratch = folder ?? FileManager.default.temporaryDirectory.appendingPathComponent("loom-bench-checkpoint-\(getpid())").path
        defer { if folder == nil { try? FileManager.default.removeItem(atPath: scratch) } }
        do {
            let store = try CheckpointStore(folder: URL(fileURLWithPath: scratch), retention: CheckpointRetention(keepLast: 2))
            let state = SyntheticCheckpoint.state(step: 1, base: base)
            let floats = (state.networks + state.optimizers).flatMap(\.tensors).reduce(0) { $0 + $1.1.count }
            print("state: \(grouped(state.parameterCount("model"))) parameters × (model, ema, 2 Adam moments) = "
                  + "\(megabytes(floats * 4)) in \((state.networks + state.optimizers).flatMap(\.tensors).count) tensors; folder \(scratch)")
            func seconds(_ body: () throws -> Void) rethrows -> Double {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
            var s = state
            var foreground: [Double] = [], stall: [Double] = [], background: [Double] = [], load: [Double] = []
            for r in 0..<repeats {
                s.step = 2 * r + 1
                foreground.append(try seconds { try store.save(s) })
                s.step = 2 * r + 2
                var snapshot = 0.0
                background.append(try seconds {
                    snapshot = try seconds { try store.saveInBackground(s) }
                    try store.waitForPendingWrite()
                })
                stall.append(snapshot)
                let url = store.url(step: s.step)
                load.append(try seconds { _ = try store.load(url) })
            }
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: store.url(step: s.step).path))?[.size] as? Int) ?? 0
            func row(_ name: String, _ v: [Double]) {
                let sorted = v.sorted()
                print(name.padding(toLength: 46, withPad: " ", startingAt: 0)
                      + String(format: "%8.3f s median  %8.3f s min  %8.3f s max", sorted[sorted.count / 2], sorted[0], sorted[sorted.count - 1]))
            }
            print("file: \(megabytes(bytes)); \(repeats) saves per mode")
            row("foreground save (training waits for all)", foreground)
            row("background save: training waits (snapshot)", stall)
            row("background save: write until done", background)
            row("load and verify", load)
            let median = foreground.sorted()[foreground.count / 2]
            let threshold = CheckpointStore.backgroundThreshold
            print(String(format: "foreground saves take %.2f s here, %@ the %.0f s threshold: the default mode (%@) writes in the %@ here",
                         median, median > threshold ? "over" : "under", threshold, CheckpointWriteMode.recommended.rawValue,
                         median > threshold ? "background" : "foreground"))
        } catch let error as StorageError {
            FileHandle.standardError.write(Data("loom bench checkpoint: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
