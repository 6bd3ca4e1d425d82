import ArgumentParser
import Foundation
import LoomCoordinator
import LoomTraining

/// `loom train CFG --nproc N`: the supervising coordinator; the MPI workers are its children.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Launch and supervise a training run: restarts after a dead or hung worker, checkpoints on SIGTERM/SIGUSR1.",
        discussion: "Exit status 0 when train.max_steps was reached, \(RunExit.requeue) after a preemption checkpoint (requeue), 1 otherwise.")

    @Argument(help: "Run config (YAML).")
    var config: String

    @Argument(help: "Overrides, e.g. optimizer.lr=1e-4 train.max_steps=500.")
    var overrides: [String] = []

    @Option(help: "Number of workers (MPI ranks).")
    var nproc: Int = 1

    @Option(help: "Open MPI hostfile ('HOST slots=N' per line), for mpirun across machines.")
    var hostfile: String?

    @Option(help: "mpirun, or srun inside a Slurm allocation.")
    var launcher: String = "mpirun"

    @Option(name: .customLong("run-dir"), help: "Run folder (default runs/<config name>).")
    var runDir: String?

    @Option(parsing: .singleValue, help: "An Open MPI MCA setting key=value, passed as --mca key value (repeatable).")
    var mca: [String] = []

    @Option(name: .customLong("bind-to"), help: "mpirun --bind-to (core, socket, none).")
    var bindTo: String?

    @Option(name: .customLong("map-by"), help: "mpirun --map-by (e.g. node, ppr:2:node).")
    var mapBy: String?

    @Flag(help: "Allow more workers than cores (mpirun --oversubscribe).")
    var oversubscribe = false

    func run() throws {
        let plan: LaunchPlan
        do {
            plan = try LaunchPlan(config: config, overrides: overrides, nproc: nproc, launcher: launcher, hostfile: hostfile,
                                  runDir: runDir, mca: mca, bindTo: bindTo, mapBy: mapBy, oversubscribe: oversubscribe,
                                  loomPath: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path)
        } catch {
            FileHandle.standardError.write(Data("loom train: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let status: Int32
        do {
            status = try Coordinator(plan: plan).supervise()
        } catch {
            FileHandle.standardError.write(Data("loom train: \(error)\n".utf8))
            throw ExitCode(1)
        }
        throw ExitCode(status)
    }
}
