import ArgumentParser
import Foundation

/// The `loom` command line.
struct LoomCommand: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "loom",
        abstract: "Distributed data-parallel training of generative image models.",
        version: version,
        subcommands: [Doctor.self, Prepare.self, Train.self, Worker.self, Status.self, Encode.self, Sample.self, Eval.self, Reconstruct.self, Inspect.self, Export.self, Bench.self, SelfTest.self]
    )
}

/// A command-line option out of range: one line naming the option, the value and what it must be.
struct OptionError: Error, CustomStringConvertible {
    var option: String
    var value: String
    var expected: String
    var description: String { "\(option) must be \(expected), found \(value)" }

    /// Throws unless `value` lies in `range`.
    static func check<T: Comparable>(_ option: String, _ value: T, in range: ClosedRange<T>) throws {
        guard range.contains(value) else {
            throw OptionError(option: option, value: "\(value)", expected: "between \(range.lowerBound) and \(range.upperBound)")
        }
    }

    /// Throws unless `value` is finite and lies in `range`.
    static func check(_ option: String, _ value: Double, in range: ClosedRange<Double>) throws {
        guard value.isFinite, range.contains(value) else {
            throw OptionError(option: option, value: "\(value)", expected: "a number between \(range.lowerBound) and \(range.upperBound)")
        }
    }
}

extension LoomCommand {
    /// Parses and runs the command. A mistake in the command line (unknown option, a value that
    /// does not parse, one out of range) is one line on stderr, "loom: …", and exit status 1,
    /// instead of ArgumentParser's message plus usage and status 64; `--help` and `--version`
    /// are unchanged, and errors a command reports itself keep their own exit status.
    static func runReportingErrorsInOneLine() -> Never {
        do {
            var command = try parseAsRoot()
            try command.run()
            Foundation.exit(0)
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is ExitCode { self.exit(withError: error) }
            let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            FileHandle.standardError.write(Data("loom: \(message)\n".utf8))
            Foundation.exit(1)
        }
    }
}
