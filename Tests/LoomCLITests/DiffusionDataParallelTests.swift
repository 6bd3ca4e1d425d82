import Foundation
import Testing

/// Diffusion (U-Net and DiT, class-conditional with label dropout, with and without learned
/// variances) data parallel over 2 ranks against one process on the whole batch.
@Suite(.serialized) struct DiffusionDataParallelTests {
    @Test(arguments: [("dit", false), ("dit", true), ("unet", false), ("unet", true)])
    func dataParallelStepsEqualOneProcessOnTheWholeBatch(_ model: String, _ learnSigma: Bool) throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "diffusion-ddp", "--model", model] + (learnSigma ? ["--learn-sigma"] : []))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let name = model + (learnSigma ? " learn_sigma" : "")
        for rank in 0..<2 {
            let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("rank \(rank): selftest diffusion-ddp \(name) ok") }
            if let line, let value = Double(line.split(separator: " ").last!.dropLast()) {
                #expect(value <= 1e-5)
            } else {
                Issue.record("no result line in \(r.stdout)\n\(r.stderr)")
            }
        }
    }

    /// Test the test: without the all-reduce the comparison must fail.
    @Test func skippedAllReduceFailsTheCheck() throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "diffusion-ddp", "--fault", "skip-reduce"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("differs from the whole-batch"), "\(r.stderr)")
    }
}
