import Foundation
import Testing

/// Gradients as views into the all-reduce buckets (`loom selftest bucket-views`): the reduced
/// gradients equal the old pack/unpack semantics computed from the gathered per-rank gradients
/// (bitwise for 2 ranks), blocking and overlapped, with gradient accumulation, an unused
/// parameter, a gradient the user set, no zeroGrad between steps, createGraph, and gradients
/// that arrive while their bucket is in flight.
@Suite(.serialized) struct BucketViewTests {
    @Test(arguments: [(2, false), (3, false), (2, true)])
    func reducedViewsEqualTheAverageOfTheGatheredGradients(ranks: Int, tcp: Bool) throws {
        let r = try LoomBinary.mpirun(ranks: ranks, mpiFlags: ["--mca", "btl", tcp ? "self,tcp" : "self,vader"],
                                      ["selftest", "bucket-views"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for rank in 0..<ranks {
            #expect(r.stdout.contains("rank \(rank): selftest bucket-views ok"), "\(r.stdout)\n\(r.stderr)")
        }
        // The late case really happened: some bucket was corrected after its wait.
        let late = r.stdout.split(separator: "\n").first { $0.contains("late gradients") } ?? ""
        #expect(late.contains(" late correction(s)") && !late.contains(" 0 late correction(s)"), "\(late)")
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("bucket-views: ") }.count == 10, "\(r.stdout)")
    }

    /// The comparison is live: summed instead of averaged gradients fail it.
    @Test func summedGradientsFailTheCheck() throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "bucket-views", "--fault", "sum"])
        #expect(r.status != 0)
        #expect(!r.stdout.contains("selftest bucket-views ok"))
        #expect(r.stderr.contains("expected") && r.stderr.contains("bitwise (old pack/unpack semantics)"), "\(r.stderr)")
    }
}
