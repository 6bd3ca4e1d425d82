import Foundation
import LoomStorage
import Testing

/// Two nodes as network namespaces, and a real one-node Slurm: in CoordinatorTests' serialised
/// suite. Each test starts what it needs and stops it on the way out, failed or not.
extension CoordinatorTests {
    static let netns = "cluster/test/netns.sh"
    static let agent = Harness.repository + "/cluster/test/netns-agent.sh"
    static let hostfile = Harness.repository + "/cluster/test/hosts-netns"

    /// mpirun across the namespaces (CLUSTER.md: TCP on the private /24, no binding, yield when idle).
    static var acrossNamespaces: [String] {
        ["--nproc", "2", "--hostfile", hostfile, "--mca", "plm_rsh_agent=\(agent)", "--mca", "btl=self,tcp",
         "--mca", "btl_tcp_if_include=10.77.0.0/24", "--mca", "oob_tcp_if_include=10.77.0.0/24",
         "--mca", "mpi_yield_when_idle=1", "--mca", "rtc_hwloc_vmhole=none", "--bind-to", "none"]
    }

    /// `loom train` inside namespace node0.
    static func trainInNode0(_ folder: String, run: String, steps: Int, extra: [String], log: String) throws -> Harness.Background {
        try Harness.Background("/usr/sbin/ip", ["netns", "exec", "node0", LoomBinary.path, "train", Harness.config]
                               + Harness.tiny(folder, steps: steps, extra: extra) + acrossNamespaces + ["--run-dir", run], log: log)
    }

    @Test func twoNamespacesFinishAndACutLinkIsDetectedKilledAndResumed() throws {
        let folder = try TrainingTests.stripes(count: 96)
        try Harness.shell(Self.netns, ["up"])
        defer { _ = try? Harness.shell(Self.netns, ["down"], check: false) }

        // A plain run across the two namespaces.
        let plain = try Self.trainInNode0(folder, run: folder + "/plain", steps: 40, extra: [], log: folder + "/plain.log")
        #expect(plain.wait(seconds: 90) == 0, "\(plain.output)")
        #expect(try CheckpointStore.read(folder + "/plain/checkpoints/latest").step == 40)
        let launch = try String(contentsOfFile: folder + "/plain/launch.sh", encoding: .utf8)
        #expect(launch.contains("--hostfile") && launch.contains("plm_rsh_agent"))

        // Cut the link mid-run: MPI hangs without an error; the watchdog must see it.
        let run = folder + "/cut"
        let timeout = 5.0
        let train = try Self.trainInNode0(folder, run: run, steps: Self.steps,
                                          extra: ["coordinator.hang_timeout=\(timeout)", "coordinator.restart_backoff=1"], log: folder + "/cut.log")
        #expect(Harness.waitUntil(60) { (Harness.heartbeat(run, rank: 1)?.step ?? 0) >= 120 }, "\(train.output)")
        let before = [Harness.heartbeat(run, rank: 0)?.pid, Harness.heartbeat(run, rank: 1)?.pid].compactMap { $0 }
        let cutAt = Date().timeIntervalSince1970
        try Harness.shell(Self.netns, ["cut"])
        let detected = Harness.waitUntil(timeout + 20) { !Harness.events(run, named: "restart").isEmpty }
        #expect(detected, "no restart after the cut: \(train.output)")
        // The leftovers of the hung job are gone before the link comes back.
        for pid in before { #expect(!Harness.alive(pid), "worker pid \(pid) of the hung job is still running") }
        try Harness.shell(Self.netns, ["restore"])
        let restoredAt = Date().timeIntervalSince1970
        #expect(train.wait(seconds: 120) == 0, "\(train.output)")
        let r = try #require(Harness.events(run, named: "restart").first)
        #expect((r["reason"] as? String ?? "").contains("no rank made progress"), "\(r)")
        #expect((r["steps_lost"] as? Int ?? 99) <= Self.every, "\(r)")
        let detectedAfter = try #require(r["detected_at"] as? Double) - cutAt
        let cleanedAfter = try #require(r["cleaned_at"] as? Double) - cutAt
        let resumed = try #require(Harness.events(run, named: "resumed").first?["at"] as? Double)
        print("link cut at step ≥ 120 (hang_timeout \(timeout) s): detected after \(Harness.seconds(detectedAfter)), leftovers killed after "
              + "\(Harness.seconds(cleanedAfter)), link restored after \(Harness.seconds(restoredAt - cutAt)), training again after "
              + "\(Harness.seconds(resumed - cutAt)), \(r["steps_lost"] ?? "?") step(s) repeated")
        #expect(detectedAfter >= timeout - 0.5 && detectedAfter < timeout + 4)
        #expect(try CheckpointStore.read(run + "/checkpoints/latest").step == Self.steps)
    }

    @Test func slurmRequeueAndUSR1PreemptionResumeTheSameJobBitwise() throws {
        for tool in ["slurmctld", "slurmd", "sbatch", "scontrol", "munged"] {
            try #require(["/usr/sbin/", "/usr/bin/"].contains { FileManager.default.isExecutableFile(atPath: $0 + tool) },
                         "\(tool) is not installed (scripts/setup --tests installs slurmctld slurmd slurm-client munge)")
        }
        let folder = try TrainingTests.stripes(count: 96)
        let clusterDir = folder + "/slurm"
        try Harness.shell("cluster/test/slurm.sh", ["start", clusterDir])
        defer { _ = try? Harness.shell("cluster/test/slurm.sh", ["stop", clusterDir], check: false) }
        let env = ["SLURM_CONF": clusterDir + "/slurm.conf"]
        let reference = try Harness.reference(folder, steps: Self.steps)

        func scontrol(_ args: [String]) throws -> LoomBinary.Result { try LoomBinary.run("/usr/bin/scontrol", args, environment: env) }
        func state(_ job: String) throws -> String {
            let out = try scontrol(["show", "job", job]).stdout
            return out.components(separatedBy: "JobState=").dropFirst().first?.split(separator: " ").first.map(String.init) ?? "?"
        }

        for preemption in ["requeue", "usr1"] {
            let run = folder + "/" + preemption
            let submit = try LoomBinary.run("/usr/bin/sbatch", ["--parsable", "--chdir", folder, "--export=ALL,LOOM=\(LoomBinary.path)",
                                                               Harness.repository + "/cluster/slurm/train.sbatch", Harness.config, run]
                                            + Harness.tiny(folder, steps: Self.steps), environment: env)
            try #require(submit.status == 0, "\(submit.stderr)")
            let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
            #expect(Harness.waitUntil(60) { (Harness.heartbeat(run, rank: 0)?.step ?? 0) >= 110 },
                    "job \(job) did not train: \((try? state(job)) ?? "?") \((try? String(contentsOfFile: "\(folder)/loom-\(job).out", encoding: .utf8)) ?? "")")
            let preemptedAt = Date().timeIntervalSince1970
            let p = preemption == "requeue"
                ? try scontrol(["requeue", job])
                : try LoomBinary.run("/usr/bin/scancel", ["--signal=USR1", "--batch", job], environment: env)
            #expect(p.status == 0, "\(p.stderr)")
            // Wait for completion. (Not `scontrol update StartTime=now` on the pending job: started
            // within cred_expire of the requeue, Slurm kills it, "Job credential revoked", FAILED.)
            var final = ""
            Harness.waitUntil(120) {
                final = (try? state(job)) ?? "?"
                return ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"].contains(final)
            }
            let out = (try? String(contentsOfFile: "\(folder)/loom-\(job).out", encoding: .utf8)) ?? ""
            #expect(final == "COMPLETED", "job \(job) ended \(final):\n\(out)")
            let starts = Harness.events(run, named: "start")
            #expect(starts.count == 2 && starts.allSatisfy { $0["slurm_job_id"] as? String == job }, "\(starts)")
            #expect(starts.last?["slurm_restart_count"] as? String == "1", "\(starts)")
            let stop = try #require(Harness.events(run, named: "preempted").first)
            #expect(stop["signal"] as? String == (preemption == "requeue" ? "SIGTERM" : "SIGUSR1"), "\(stop)")
            #expect(stop["checkpoint_at_stop"] as? Bool == true, "\(stop)")
            let stopStep = try #require(stop["step"] as? Int)
            #expect(out.contains("resuming from") && out.contains("step-\(String(format: "%08d", stopStep)).h5"), "\(out)")
            let state = try CheckpointStore.read(run + "/checkpoints/latest")
            #expect(state.step == Self.steps)
            Harness.expectBitwiseEqual(reference, state, "Slurm \(preemption) vs uninterrupted")
            let stopped = (stop["stopped_at"] as? Double ?? 0) - preemptedAt
            let resumed = (starts.last?["at"] as? Double ?? .nan) - preemptedAt
            print("Slurm \(preemption) at step ≥ 110: checkpoint of step \(stopStep) and workers gone after \(Harness.seconds(stopped)), "
                  + "job \(job) running again (SLURM_RESTART_COUNT=1) after \(Harness.seconds(resumed))")
        }
    }
}
