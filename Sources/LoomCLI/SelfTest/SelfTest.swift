import ArgumentParser
import Foundation
import LoomDistributed
import LoomTensor

/// `loom selftest …`: checks that run under mpirun from the test suite (hidden from help).
struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest", abstract: "Checks run by the test suite under mpirun.",
        shouldDisplay: false, subcommands: [SelfTestAllReduce.self, SelfTestAbort.self, SelfTestMemory.self,
                                            SelfTestCheckpointCrash.self, SelfTestDDP.self, SelfTestSyncBN.self,
                                            SelfTestGANDDP.self, SelfTestRead.self, SelfTestForward.self, SelfTestVAEDDP.self,
                                            SelfTestDiffusionDDP.self, SelfTestNumerics.self, SelfTestLatents.self,
                                            SelfTestBucketViews.self])
}

/// Runs `body` on this rank; an error on any rank ends the whole job with a message naming
/// the rank, so no other rank waits forever in a collective.
func runOnEveryRank(_ body: (Communicator) throws -> Void) throws {
    let comm = try Communicator.world()
    do {
        try body(comm)
    } catch {
        if comm.size > 1 { comm.abort("\(error)") }
        throw error
    }
}

struct SelfTestAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "allreduce")

    func run() throws {
        try runOnEveryRank { comm in
            let n = comm.size, r = comm.rank
            // Plain sums of odd sizes, including empty: rank r contributes (r+1)·(i+1).
            for count in [0, 1, 3, 17, 1023, 65_537] {
                let t = Tensor(uninitialized: [count])
                for i in 0..<count { t.data[i] = Float(r + 1) * Float(i % 7 + 1) }
                try comm.allReduceSum(t.data, count: count)
                let ranksSum = Float(n * (n + 1) / 2)
                for i in 0..<count where t.data[i] != ranksSum * Float(i % 7 + 1) {
                    throw ValidationError("allReduceSum(\(count)) element \(i) = \(t.data[i])")
                }
            }
            // Gradient averaging with odd parameter sizes and tiny buckets (one parameter
            // larger than the bucket, an empty parameter, a parameter without gradient).
            for overlap in [false, true] {
                for bucketBytes in [16, 40, 1 << 20] {
                    let shapes = [[3], [0], [5, 7], [1], [2, 2, 2], [4]]
                    let params = shapes.map { Tensor.zeros($0, requiresGrad: true) }
                    let reducer = GradientReducer(parameters: params, communicator: comm,
                                                  bucketBytes: bucketBytes, overlap: overlap)
                    for (k, p) in params.enumerated() where k != 5 {  // parameter 5 gets no gradient
                        p.grad = Tensor(uninitialized: p.shape)
                        for i in 0..<p.count { p.grad!.data[i] = Float(r * 10 + k) + Float(i) }
                        p.onGradientReady?(p)
                    }
                    try reducer.synchronize()
                    for (k, p) in params.enumerated() {
                        let meanRank = Float(n - 1) / 2
                        for i in 0..<p.count {
                            let expected = k == 5 ? 0 : (meanRank * 10 + Float(k) + Float(i))
                            if abs(p.grad!.data[i] - expected) > 1e-5 {
                                throw ValidationError("reducer(bucket \(bucketBytes) B, overlap \(overlap)) param \(k)[\(i)] = \(p.grad!.data[i]), expected \(expected)")
                            }
                        }
                    }
                }
            }
            // Broadcast makes replicas identical; verify catches a difference.
            let w = Tensor(repeating: Float(r), shape: [10])
            try Replicas.broadcast([w], over: comm)
            try Replicas.verify([("w", w)], over: comm)
            if n > 1 {
                if r == n - 1 { w.data[3] += 1 }
                do {
                    try Replicas.verify([("a", Tensor.zeros([2])), ("w", w)], over: comm)
                    throw ValidationError("verify missed a diverged replica")
                } catch let DistributedError.replicasDiverged(_, ranks, first) {
                    guard ranks == [n - 1], first == "w" else { throw ValidationError("verify named \(ranks) \(first)") }
                }
            }
            print("rank \(r): selftest allreduce ok")
        }
    }
}

struct SelfTestAbort: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "abort")

    @Option(help: "The rank that fails.")
    var failingRank = 1

    func run() throws {
        try runOnEveryRank { comm in
            if comm.rank == failingRank { throw ValidationError("deliberate failure for the test") }
            try comm.barrier()  // the other ranks would wait here forever without the abort
        }
    }
}
