import ArgumentParser
import Foundation
import LoomStorage
import LoomTensor

/// `loom selftest read PATH…`: reads each checkpoint file or dataset folder completely, as
/// training and sampling do (every checksum verified), and prints one line per path:
/// `PATH<tab>ok<tab>DIGEST` (XXH64 of everything read) or `PATH<tab>error<tab>MESSAGE`. The
/// reader fuzz tests run it in a child process, so a crash inside a library ends only the child.
struct SelfTestRead: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read")

    @Argument(help: "Checkpoint files and dataset folders.")
    var paths: [String]

    func run() throws {
        for path in paths {
            do {
                print("\(path)\tok\t\(XXH64.hex(try Self.digest(path)))")
            } catch {
                print("\(path)\terror\t\(error)")
            }
            fflush(stdout)
        }
    }

    /// XXH64 over what a full read returns.
    static func digest(_ path: String) throws -> UInt64 {
        var h = XXH64()
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            let dataset = try ShardedDataset(folder: path)
            defer { dataset.close() }
            let pixels = try dataset.readAll()
            h.update(pixels)
            var labels = (dataset.labels ?? []).map { Int64($0) }
            labels.withUnsafeMutableBytes { h.update($0.baseAddress!, count: $0.count) }
            return h.digest()
        }
        let state = try CheckpointFile.read(path)
        for (_, tensors) in state.networks + state.optimizers {
            var value = CheckpointFile.checksum(of: tensors)
            withUnsafeBytes(of: &value) { h.update($0.baseAddress!, count: 8) }
        }
        h.update(Array("\(state.step) \(state.epoch) \(state.cursor) \(state.counters.sorted { $0.key < $1.key }) \(state.configYAML)".utf8))
        return h.digest()
    }
}
