import Foundation
import Testing

/// Data parallelism end to end under mpirun: a data-parallel step equals one process's step on
/// the whole batch, over shared memory and over TCP, with and without overlapped all-reduce
/// and with many buckets; synchronised batch norm equals whole-batch batch norm.
@Suite(.serialized) struct DataParallelTests {
    /// One `loom selftest ddp` configuration.
    struct Setup: CustomTestStringConvertible, Sendable {
        var ranks: Int
        var tcp: Bool
        var overlap: Bool
        /// Bucket capacity in bytes; nil for the default (everything in one bucket).
        var bucketBytes: Int?
        /// Gradient accumulation: backward passes before each synchronize.
        var microBatches = 1

        var testDescription: String {
            "\(ranks) ranks over \(tcp ? "TCP" : "shared memory"), overlap \(overlap ? "on" : "off"), "
                + (bucketBytes.map { "\($0)-byte buckets" } ?? "default buckets")
                + (microBatches > 1 ? ", \(microBatches) micro-batches" : "")
        }

        var mpiFlags: [String] { ["--mca", "btl", tcp ? "self,tcp" : "self,vader"] }
    }

    static let setups: [Setup] = [
        Setup(ranks: 2, tcp: false, overlap: false, bucketBytes: nil),
        Setup(ranks: 2, tcp: false, overlap: true, bucketBytes: nil),
        Setup(ranks: 2, tcp: false, overlap: true, bucketBytes: 256),
        Setup(ranks: 4, tcp: false, overlap: false, bucketBytes: 256),
        Setup(ranks: 4, tcp: false, overlap: true, bucketBytes: nil),
        Setup(ranks: 2, tcp: true, overlap: false, bucketBytes: nil),
        Setup(ranks: 2, tcp: true, overlap: true, bucketBytes: 256),
        Setup(ranks: 4, tcp: true, overlap: false, bucketBytes: nil),
        Setup(ranks: 4, tcp: true, overlap: true, bucketBytes: 256),
        // Several backward passes per synchronize: buckets sent during the first must be resent.
        Setup(ranks: 2, tcp: false, overlap: true, bucketBytes: nil, microBatches: 2),
        Setup(ranks: 4, tcp: true, overlap: true, bucketBytes: 256, microBatches: 2),
    ]

    static func ddpArguments(_ s: Setup, extra: [String] = []) -> [String] {
        ["selftest", "ddp", "--steps", "20", "--batch", "\(2 * s.microBatches)", "--micro-batches", "\(s.microBatches)"]
            + (s.overlap ? ["--overlap"] : [])
            + (s.bucketBytes.map { ["--bucket-bytes", "\($0)"] } ?? []) + extra
    }

    @Test(arguments: setups) func dataParallelStepEqualsOneProcessOnTheWholeBatch(_ setup: Setup) throws {
        let r = try LoomBinary.mpirun(ranks: setup.ranks, mpiFlags: setup.mpiFlags, Self.ddpArguments(setup))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for rank in 0..<setup.ranks {
            let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("rank \(rank): selftest ddp ok") }
            #expect(line != nil, "\(r.stdout)\n\(r.stderr)")
            // "… (max rel diff 1.23e-07)": parse the number and hold it to the bound again.
            if let line, let value = Double(line.split(separator: " ").last!.dropLast()) {
                #expect(value <= 1e-5)
            } else {
                Issue.record("no max rel diff in \(String(describing: line))")
            }
        }
        // The tiny buckets really split the 8 parameters into several all-reduces. With 256-byte
        // (64-float) buckets filled in reverse order, closing a bucket before a parameter that
        // would overflow it: head.bias 10 | head.weight 1280 | conv2.bias 8 | conv2.weight 576 |
        // norm.bias 8 + norm.weight 8 + conv1.bias 8 | conv1.weight 216 → 6 buckets.
        let summary = r.stdout.split(separator: "\n").first { $0.hasPrefix("ddp: ") } ?? ""
        #expect(summary.contains(setup.bucketBytes == nil ? "1 bucket(s)" : "6 bucket(s)"), "\(summary)")
    }

    /// The check fails loudly when the gradients are not averaged (local or summed).
    @Test(arguments: ["skip-reduce", "sum"]) func wrongGradientsFailTheCheck(_ fault: String) throws {
        let setup = Setup(ranks: 2, tcp: false, overlap: false, bucketBytes: nil)
        let r = try LoomBinary.mpirun(ranks: 2, mpiFlags: setup.mpiFlags, Self.ddpArguments(setup, extra: ["--fault", fault]))
        #expect(r.status != 0)
        #expect(!r.stdout.contains("selftest ddp ok"))
        #expect(r.stderr.contains(fault == "sum" ? "averaged gradients differ from the whole-batch gradients"
                                                 : "replicas diverged: averaged gradients"), "\(r.stderr)")
    }

    @Test func synchronisedBatchNormEqualsWholeBatchNorm() throws {
        let r = try LoomBinary.mpirun(ranks: 2, ["selftest", "syncbn"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for rank in 0..<2 { #expect(r.stdout.contains("rank \(rank): selftest syncbn ok"), "\(r.stdout)\n\(r.stderr)") }
    }
}
