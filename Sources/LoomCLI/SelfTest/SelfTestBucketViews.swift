import ArgumentParser
import Foundation
import LoomDistributed
import LoomNN
import LoomTensor

/// `loom selftest bucket-views`: gradients averaged through bucket views (backward writing
/// into the all-reduce buckets, pre-scaled) equal the pack/unpack semantics computed
/// independently: a copy of the network without a reducer runs the same passes, its local
/// gradients are gathered on rank 0, summed in rank order and multiplied by 1/N (what the
/// old reducer's MPI sum and unpack did), and broadcast back. With 2 ranks (an exact 1/2)
/// every case but the late one must agree bitwise; otherwise within 1e-5 relative.
struct SelfTestBucketViews: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bucket-views")

    @Option(help: "Test the test: 'sum' leaves the reduced gradients summed (× N); it must fail.")
    var fault = "none"

    /// One way of producing gradients before `synchronize()`.
    struct Scenario {
        var name: String
        var overlap: Bool
        var bucketBytes = GradientReducer.defaultBucketBytes
        var microBatches = 1
        /// Overlap with `startsDuringBackward` left true over several passes: buckets go out
        /// during the first pass and the later passes' gradients arrive while they are in flight.
        var late = false
        /// A gradient the user set before backward, on `head.bias`.
        var userGradient = false
        /// No `zeroGrad` between the two steps: the second accumulates onto the average.
        var keepGradients = false
        /// The last micro-batch's backward with `createGraph`.
        var createGraphLast = false
        /// The second step synchronises again without any backward (needs `keepGradients`).
        var secondStepWithoutBackward = false
    }

    static let scenarios: [Scenario] = [
        Scenario(name: "blocking", overlap: false),
        Scenario(name: "overlap, 256-byte buckets", overlap: true, bucketBytes: 256),
        Scenario(name: "2 micro-batches", overlap: false, microBatches: 2),
        Scenario(name: "2 micro-batches, overlap", overlap: true, bucketBytes: 256, microBatches: 2),
        Scenario(name: "2 passes in flight (late gradients)", overlap: true, bucketBytes: 256, microBatches: 2, late: true),
        Scenario(name: "user-set gradient, overlap", overlap: true, bucketBytes: 256, userGradient: true),
        Scenario(name: "no zeroGrad between steps", overlap: false, keepGradients: true),
        Scenario(name: "no zeroGrad between steps, overlap", overlap: true, bucketBytes: 256, keepGradients: true),
        Scenario(name: "createGraph backward", overlap: false, microBatches: 2, createGraphLast: true),
        Scenario(name: "synchronize again without backward", overlap: true, bucketBytes: 256, keepGradients: true,
                 secondStepWithoutBackward: true),
    ]

    static let tolerance = 1e-5

    func run() throws {
        try runOnEveryRank { comm in
            var worst = 0.0
            for s in Self.scenarios { worst = max(worst, try check(s, comm)) }
            print("rank \(comm.rank): selftest bucket-views ok (max rel diff \(scientific(worst)))")
        }
    }

    /// Runs two steps of `s` on a replica with a reducer and on a plain copy; returns the worst
    /// relative difference of the reduced gradients from the expected averages.
    func check(_ s: Scenario, _ comm: Communicator) throws -> Double {
        let n = comm.size, r = comm.rank, seed: UInt64 = 5, rowsPerPass = 2, steps = 2
        let replica = DDPTestNet(seed: seed), plain = DDPTestNet(seed: seed)
        // A parameter no loss reaches: its average is zeros.
        let unusedR = Tensor.zeros([5], requiresGrad: true), unusedP = Tensor.zeros([5], requiresGrad: true)
        let mine = replica.parameters() + [unusedR], theirs = plain.parameters() + [unusedP]
        let names = replica.namedParameters().map(\.0) + ["unused"]
        let reducer = GradientReducer(parameters: mine, communicator: comm, bucketBytes: s.bucketBytes, overlap: s.overlap)
        let perStep = n * rowsPerPass * s.microBatches
        let (images, targets) = DDPTestNet.dataset(samples: steps * perStep, seed: seed)
        var expected: [Tensor] = []
        var worst = 0.0
        for step in 0..<steps {
            if s.keepGradients && step > 0 {
                for (p, e) in zip(theirs, expected) { p.grad = e.copy() }  // what the old unpack left
            } else {
                for p in mine + theirs { p.grad = nil }
            }
            if s.userGradient {
                for net in [replica, plain] {
                    net.head.bias!.grad = Tensor((0..<10).map { Float(r + 1) * 0.125 * Float($0 - 4) }, shape: [10])
                }
            }
            for k in 0..<(s.secondStepWithoutBackward && step > 0 ? 0 : s.microBatches) {
                reducer.startsDuringBackward = s.late || k == s.microBatches - 1
                let first = step * perStep + (r * s.microBatches + k) * rowsPerPass
                let rows = first..<(first + rowsPerPass)
                for net in [replica, plain] {
                    let loss = mseLoss(net(images.sliced(axis: 0, rows)), targets.sliced(axis: 0, rows))
                    (loss * (1 / Float(s.microBatches))).backward(createGraph: s.createGraphLast && k == s.microBatches - 1)
                }
            }
            try reducer.synchronize()
            if fault == "sum" {
                for p in mine { for i in 0..<p.count { p.grad!.data[i] *= Float(n) } }
            }
            expected = try average(theirs.map { $0.grad ?? Tensor.zeros($0.shape) }, comm)
            for (k, p) in mine.enumerated() {
                guard let g = p.grad, g === p.gradientView?.tensor else {
                    throw ValidationError("\(s.name), step \(step + 1): the gradient of \(names[k]) is not its bucket view")
                }
                let difference = relativeDifference(g, expected[k])
                worst = max(worst, difference)
                if n == 2 && !s.late {
                    // Scaling by 1/2 is exact, so shares summed equal the sum halved, bit for bit.
                    for i in 0..<p.count where g.data[i].bitPattern != expected[k].data[i].bitPattern {
                        throw ValidationError("\(s.name), step \(step + 1): \(names[k])[\(i)] = \(g.data[i]), "
                                              + "expected \(expected[k].data[i]) bitwise (old pack/unpack semantics)")
                    }
                } else if !(difference <= Self.tolerance) {
                    throw ValidationError("\(s.name), step \(step + 1): \(names[k]) differs from the average of the "
                                          + "ranks' gradients by \(scientific(difference)) (relative)")
                }
            }
        }
        if s.late && n > 1 && reducer.lateCorrections == 0 {
            throw ValidationError("\(s.name): no gradient arrived while its bucket was in flight; the case was not exercised")
        }
        if r == 0 {
            print("bucket-views: \(s.name): \(reducer.bucketSizes.count) bucket(s), max rel diff \(scientific(worst))"
                  + (s.late ? ", \(reducer.lateCorrections) late correction(s)" : ""))
        }
        return worst
    }

    /// The old reducer's result from every rank's local `gradients`: gathered on rank 0,
    /// summed in rank order, × 1/N in float, and sent back to every rank.
    func average(_ gradients: [Tensor], _ comm: Communicator) throws -> [Tensor] {
        let n = comm.size
        return try gradients.map { g in
            let all = try comm.gather(g.array)
            let out = Tensor.zeros(g.shape)
            if comm.rank == 0 {
                for i in 0..<g.count {
                    var sum = all[i]
                    for rank in 1..<max(n, 1) where rank < n { sum += all[rank * g.count + i] }
                    out.data[i] = sum * (1 / Float(n))
                }
            }
            try comm.broadcast(out.data, count: out.count)
            return out
        }
    }
}
