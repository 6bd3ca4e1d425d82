import ArgumentParser
import Foundation
import LoomDistributed
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom worker CFG [key=value …]`: the MPI training program (`mpirun -np 2 loom worker cfg.yaml`).
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a config on every MPI rank (run under mpirun; one process also works).")

    @Argument(help: "Run config (YAML).")
    var config: String

    @Argument(help: "Overrides, e.g. optimizer.lr=1e-4 train.max_steps=500.")
    var overrides: [String] = []

    @Option(name: .customLong("run-dir"), help: "Run folder (default runs/<config name>).")
    var runDir: String?

    @Option(help: "'auto' resumes from the newest good checkpoint in the run folder; 'none' starts fresh.")
    var resume: String = "none"

    func run() throws {
        let rankText = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0"
        // Config mistakes are found before MPI starts: every rank exits 1, rank 0 says why.
        let cfg: RunConfig
        do {
            guard ["auto", "none"].contains(resume) else {
                throw ValidationError("--resume must be 'auto' or 'none', found '\(resume)'")
            }
            cfg = try RunConfig.load(file: config, overrides: overrides)
        } catch {
            if rankText == "0" { FileHandle.standardError.write(Data("loom worker: \(error)\n".utf8)) }
            throw ExitCode(1)
        }
        let dir = runDir ?? "runs/" + URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent
        let comm = try Communicator.world()
        do {
            let trainer = try Trainer(config: cfg, runDirectory: dir, resume: resume == "auto", communicator: comm)
            if case .stopped = try trainer.train() { throw ExitCode(RunExit.requeue) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            // One failing rank must not leave the others waiting in a collective forever.
            if comm.size > 1 { comm.abort("\(error)") }
            FileHandle.standardError.write(Data("loom worker: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
