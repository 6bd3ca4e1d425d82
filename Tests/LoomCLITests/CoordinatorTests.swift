import Foundation
import LoomStorage
import Testing

/// `loom train` under faults: a killed worker, a hung worker, SIGTERM, a full disk, bad input;
/// the namespace and Slurm tests are in the same serialised suite (CoordinatorClusterTests.swift)
/// so that no two of them compete for the two cores, the Slurm ports or the namespaces.
@Suite(.serialized) struct CoordinatorTests {
    static let steps = 300
    static let every = 50

    @Test func killNineOfAWorkerRestartsAndFinishesBitwise() throws {
        let folder = try TrainingTests.stripes(count: 96)
        let run = folder + "/run"
        let train = try Harness.train(folder, run: run, steps: Self.steps, extra: ["coordinator.restart_backoff=0.5"], log: folder + "/train.log")
        #expect(Harness.waitUntil(60) { (Harness.heartbeat(run, rank: 1)?.step ?? 0) >= 120 }, "\(train.output)")
        let victim = try #require(Harness.heartbeat(run, rank: 1))
        let partner = try #require(Harness.heartbeat(run, rank: 0))
        let killedAt = Date().timeIntervalSince1970
        kill(victim.pid, SIGKILL)
        #expect(train.wait(seconds: 120) == 0, "\(train.output)")
        #expect(train.output.contains("step \(Self.steps)/\(Self.steps)"))
        #expect(!Harness.alive(partner.pid), "rank 0 of the first attempt (pid \(partner.pid)) is still running")

        let restarts = Harness.events(run, named: "restart")
        #expect(restarts.count == 1, "\(Harness.events(run))")
        let r = try #require(restarts.first)
        let lost = try #require(r["steps_lost"] as? Int), resume = try #require(r["resume_step"] as? Int)
        #expect(lost <= Self.every && resume % Self.every == 0 && resume + lost == r["last_step"] as? Int, "\(r)")
        #expect((r["reason"] as? String ?? "").contains("137") || (r["reason"] as? String ?? "").contains("died"), "\(r)")
        let detected = try #require(r["detected_at"] as? Double) - killedAt
        let resumed = try #require(Harness.events(run, named: "resumed").first?["at"] as? Double) - killedAt
        print("kill -9 of rank 1 at step \(victim.step): detected after \(Harness.seconds(detected)), training again after "
              + "\(Harness.seconds(resumed)) (back-off 0.5 s), \(lost) step(s) repeated")
        #expect(detected >= 0 && detected < 10)

        let final = try CheckpointStore.read(run + "/checkpoints/latest")
        #expect(final.step == Self.steps)
        Harness.expectBitwiseEqual(try Harness.reference(folder, steps: Self.steps), final, "restarted run vs uninterrupted")

        // loom status from the files alone.
        let status = try LoomBinary.loom(["status", run])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("step: \(Self.steps)/\(Self.steps)") && status.stdout.contains("restarts: 1")
                && status.stdout.contains("not running") && status.stdout.contains("step-00000300.h5"), "\(status.stdout)")
        #expect(train.output.contains("1 restart(s)") && train.output.contains("final checkpoint"), "\(train.output)")
        // Every rank's output has its log; the launch command is recorded.
        let rank0 = try String(contentsOfFile: run + "/logs/rank-0.log", encoding: .utf8)
        #expect(rank0.contains("=== attempt 2") && rank0.contains("step \(Self.steps)/\(Self.steps)"))
        #expect(FileManager.default.fileExists(atPath: run + "/logs/rank-1.log"))
        let launch = try String(contentsOfFile: run + "/launch.sh", encoding: .utf8)
        #expect(launch.contains("mpirun") && launch.contains("-np 2") && launch.contains("export OPENBLAS_NUM_THREADS=1"), "\(launch)")
    }

    @Test func hungWorkerIsDetectedWithinTheTimeoutAndTheRunFinishes() throws {
        let folder = try TrainingTests.stripes(count: 96)
        let run = folder + "/run"
        let timeout = 4.0
        let train = try Harness.train(folder, run: run, steps: Self.steps,
                                      extra: ["coordinator.hang_timeout=\(timeout)", "coordinator.restart_backoff=0.5"],
                                      environment: ["LOOM_TEST_HANG_AT_STEP": "130", "LOOM_TEST_HANG_RANK": "1"], log: folder + "/train.log")
        #expect(train.wait(seconds: 120) == 0, "\(train.output)")
        let marker = run + "/.test-hang-done"
        let hungAt = try #require(try FileManager.default.attributesOfItem(atPath: marker)[.modificationDate] as? Date).timeIntervalSince1970
        let restarts = Harness.events(run, named: "restart")
        #expect(restarts.count == 1, "\(Harness.events(run))")
        let r = try #require(restarts.first)
        #expect((r["reason"] as? String ?? "").contains("no rank made progress"), "\(r)")
        let detected = try #require(r["detected_at"] as? Double) - hungAt
        let resumed = try #require(Harness.events(run, named: "resumed").first?["at"] as? Double) - hungAt
        print("hang of rank 1 after step 130 (hang_timeout \(timeout) s): detected after \(Harness.seconds(detected)), "
              + "training again after \(Harness.seconds(resumed)), \(r["steps_lost"] ?? "?") step(s) repeated")
        #expect(detected >= timeout - 0.5 && detected < timeout + 3, "detected after \(detected) s")
        #expect((r["steps_lost"] as? Int ?? 99) <= Self.every)
        #expect(try CheckpointStore.read(run + "/checkpoints/latest").step == Self.steps)
    }

    @Test func sigtermCheckpointsAtAStepBoundaryAndASecondTrainFinishesBitwise() throws {
        let folder = try TrainingTests.stripes(count: 96)
        let run = folder + "/run"
        let first = try Harness.train(folder, run: run, steps: Self.steps, log: folder + "/first.log")
        #expect(Harness.waitUntil(60) { (Harness.heartbeat(run, rank: 0)?.step ?? 0) >= 110 }, "\(first.output)")
        let status = try LoomBinary.loom(["status", run])
        #expect(status.stdout.contains("alive"), "\(status.stdout)")
        let signalledAt = Date().timeIntervalSince1970
        kill(first.process.processIdentifier, SIGTERM)
        #expect(first.wait(seconds: 60) == 75, "\(first.output)")
        let preempted = try #require(Harness.events(run, named: "preempted").first)
        let step = try #require(preempted["step"] as? Int)
        #expect(preempted["checkpoint_at_stop"] as? Bool == true)
        // Both ranks stopped after the same step, and that step is the checkpoint's.
        #expect(Harness.heartbeat(run, rank: 0)?.step == step && Harness.heartbeat(run, rank: 1)?.step == step)
        #expect(try CheckpointStore.read(run + "/checkpoints/latest").step == step)
        let stopped = try #require(preempted["stopped_at"] as? Double) - signalledAt
        print("SIGTERM at step ≥ 110: checkpoint of step \(step) written and every worker gone after \(Harness.seconds(stopped))")

        let second = try Harness.train(folder, run: run, steps: Self.steps, log: folder + "/second.log")
        #expect(second.wait(seconds: 120) == 0, "\(second.output)")
        #expect(second.output.contains("resuming from") && second.output.contains("step-\(String(format: "%08d", step)).h5"))
        let final = try CheckpointStore.read(run + "/checkpoints/latest")
        #expect(final.step == Self.steps)
        Harness.expectBitwiseEqual(try Harness.reference(folder, steps: Self.steps), final, "stopped and resumed vs uninterrupted")
    }

    /// The issue's full disk: a run folder on a 40 MB tmpfs, a checkpoint every 10 steps.
    @Test func fullDiskFailsTheSaveCleanlyAndIsNotRestarted() throws {
        let folder = try TrainingTests.stripes(count: 96)
        let mount = folder + "/tmpfs"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let m = try LoomBinary.run("/bin/mount", ["-t", "tmpfs", "-o", "size=40m", "tmpfs", mount])
        try #require(m.status == 0, "mounting a tmpfs failed (the tests run as root): \(m.stderr)")
        defer { _ = try? LoomBinary.run("/bin/umount", ["-l", mount]) }
        let big = ["model.base_channels=32", "checkpoint.every=10", "checkpoint.keep_last=1000"]

        // The worker alone: one line, exit 1, no crash, earlier checkpoints intact, no temporary file.
        let w = try LoomBinary.loom(["worker", Harness.config] + Harness.tiny(folder, steps: 400, extra: big) + ["--run-dir", mount + "/worker"])
        #expect(w.status == 1, "\(w.stderr)")
        let lines = w.stderr.split(separator: "\n").filter { !$0.contains("OPENBLAS_CORETYPE") }
        #expect(lines.count == 1 && lines[0].contains("No space left on device"), "\(w.stderr)")
        #expect(!w.stderr.contains("Backtrace") && !w.stderr.contains("Signal 11") && !w.stderr.contains("crashed"))
        let names = try FileManager.default.contentsOfDirectory(atPath: mount + "/worker/checkpoints")
        #expect(!names.contains { $0.contains(".tmp-") }, "\(names)")
        let kept = names.filter { $0.hasSuffix(".h5") }
        #expect(kept.count >= 1)
        for n in kept { #expect(throws: Never.self) { try CheckpointStore.read(mount + "/worker/checkpoints/" + n) } }
        try FileManager.default.removeItem(atPath: mount + "/worker")

        // coordinator.on_disk_full: retry: the failed saves are skipped and training goes on
        // (here the disk stays full, so the final save fails and ends the run with one line).
        let retry = try LoomBinary.loom(["worker", Harness.config]
            + Harness.tiny(folder, steps: 80, extra: big + ["coordinator.on_disk_full=retry", "logging.every=10"]) + ["--run-dir", mount + "/retry"])
        #expect(retry.status == 1, "\(retry.stderr)")
        let skipped = retry.stdout.split(separator: "\n").filter { $0.contains("not written") && $0.contains("retrying at the next interval") }
        #expect(skipped.count >= 2 && retry.stdout.contains("step 80/80"), "\(retry.stdout)")
        #expect(retry.stderr.contains("step-00000080.h5: write checkpoint failed: No space left on device") && !retry.stderr.contains("Backtrace"))
        try FileManager.default.removeItem(atPath: mount + "/retry")

        // Under the coordinator: reported, not restarted, exit 1.
        let train = try Harness.train(folder, run: mount + "/run", steps: 400, extra: big, log: folder + "/train.log")
        #expect(train.wait(seconds: 120) == 1, "\(train.output)")
        #expect(train.output.contains("the disk is full") && train.output.contains("not restarting"), "\(train.output)")
        #expect(!train.output.contains("Backtrace") && !train.output.contains("Signal 11"))
        #expect(Harness.events(mount + "/run", named: "disk_full").count == 1)
        #expect(Harness.events(mount + "/run", named: "restart").isEmpty)
    }

    @Test func badInputIsOneLineBeforeAnythingIsLaunched() throws {
        let folder = try TrainingTests.stripes(count: 32)
        let empty = folder + "/hosts"
        try "# no hosts here\n\n".write(toFile: empty, atomically: true, encoding: .utf8)
        let run = folder + "/run"
        let cases: [([String], String)] = [
            (["train", folder + "/missing.yaml", "--run-dir", run], "missing.yaml: cannot read the config: no such file"),
            (["train", Harness.config, "--launcher", "ssh", "--run-dir", run], "--launcher 'ssh': expected one of mpirun, srun"),
            (["train", Harness.config, "--nproc", "0", "--run-dir", run], "--nproc 0: expected at least 1 worker"),
            (["train", Harness.config] + Harness.tiny(folder, steps: 5) + ["--hostfile", empty, "--run-dir", run], "hosts: names no hosts"),
            (["train", Harness.config] + Harness.tiny(folder, steps: 5, extra: ["coordinator.hang_timeout=0"]) + ["--run-dir", run],
             "'coordinator.hang_timeout' must be between 1 and 604800 seconds, found 0.0"),
            (["train", Harness.config] + Harness.tiny(folder, steps: 5, extra: ["coordinator.max_restart=2"]) + ["--run-dir", run],
             "unknown key 'coordinator.max_restart'; did you mean 'coordinator.max_restarts'?"),
            (["train", Harness.config, "data.path=/nonexistent/data", "--run-dir", run], "/nonexistent/data"),
        ]
        for (args, text) in cases {
            let r = try LoomBinary.loom(args)
            let lines = r.stderr.split(separator: "\n").filter { !$0.contains("OPENBLAS_CORETYPE") }
            #expect(r.status == 1 && lines.count == 1 && lines[0].contains(text), "\(args.suffix(3)): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: run), "\(args): the run folder was created")
        }
        let help = try LoomBinary.loom(["train", "--help"])
        #expect(help.stdout.contains("--nproc") && !help.stdout.contains("LOOM_TEST"))
    }
}
