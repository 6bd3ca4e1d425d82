import Foundation
import Testing

/// MPI runtime checks, each a `loom selftest` run under mpirun.
@Suite(.serialized) struct DistributedTests {
    @Test(arguments: [1, 2, 3, 4]) func allReduceOddSizesBucketsAndReplicaChecks(ranks: Int) throws {
        let r = try LoomBinary.mpirun(ranks: ranks, ["selftest", "allreduce"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for rank in 0..<ranks { #expect(r.stdout.contains("rank \(rank): selftest allreduce ok")) }
    }

    @Test func allReduceOverTCPOnly() throws {
        let r = try LoomBinary.mpirun(ranks: 2, mpiFlags: ["--mca", "btl", "self,tcp"], ["selftest", "allreduce"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("rank 1: selftest allreduce ok"))
    }

    @Test func failingRankEndsTheJobInsteadOfHanging() throws {
        let start = Date()
        let r = try LoomBinary.mpirun(ranks: 3, ["selftest", "abort", "--failing-rank", "1"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("loom: rank 1: deliberate failure for the test"))
        #expect(Date().timeIntervalSince(start) < 60)
    }
}
