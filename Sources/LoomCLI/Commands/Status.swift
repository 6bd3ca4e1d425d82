import ArgumentParser
import Foundation
import LoomCoordinator

/// `loom status RUN`: a run's state from its files alone.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a run's step, rate, ETA, newest checkpoint, restarts and whether its coordinator is alive.")

    @Argument(help: "Run folder.")
    var folder: String

    func run() throws {
        do {
            print(try RunStatus(path: folder).text)
        } catch {
            FileHandle.standardError.write(Data("loom status: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
