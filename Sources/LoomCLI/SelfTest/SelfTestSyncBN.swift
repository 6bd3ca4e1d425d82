import ArgumentParser
import Foundation
import LoomDistributed
import LoomNN
import LoomTensor

/// `loom selftest syncbn`: synchronised BatchNorm2d on each rank's share of a batch behaves
/// like one process's BatchNorm2d on the whole batch (outputs, running statistics), per-rank
/// batch norm does not, and the gradients are the whole batch's.
struct SelfTestSyncBN: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "syncbn")

    @Option(help: "Samples per rank.")
    var batch = 3

    static let tolerance = 1e-5
    static let channels = 20  // more than one 16-lane chunk, and not a multiple of 16

    func run() throws {
        try runOnEveryRank { comm in
            let n = comm.size, r = comm.rank, C = Self.channels
            let rows = r * batch..<(r + 1) * batch
            var stream = RandomStream(seed: 5, purpose: .data)
            let x = Tensor.normal([n * batch, 3, 3, C], stream: &stream)
            // Per-sample offsets and per-channel scales: the ranks' shares have clearly
            // different statistics, so per-rank batch norm is told apart.
            let perSample = x.count / x.shape[0]
            for s in 0..<x.shape[0] {
                for j in 0..<perSample {
                    x.data[s * perSample + j] = x.data[s * perSample + j] * (1 + Float(j % C) * 0.1) + Float(s) * 0.5 - 1
                }
            }
            let upstream = Tensor.normal(x.shape, stream: &stream)
            let weight = Tensor.uniform([C], low: 0.5, high: 1.5, stream: &stream)
            let bias = Tensor.uniform([C], low: -0.5, high: 0.5, stream: &stream)
            func makeNorm(_ reducer: ReplicaReducer?) -> BatchNorm2d {
                let bn = BatchNorm2d(C)
                bn.weight!.assign(weight)
                bn.bias!.assign(bias)
                bn.reducer = reducer
                return bn
            }
            let synced = makeNorm(comm), perRank = makeNorm(nil), full = makeNorm(nil)
            var worst = 0.0
            func check(_ what: String, _ a: Tensor, _ b: Tensor) throws {
                let d = relativeDifference(a, b)
                worst = max(worst, d)
                guard d <= Self.tolerance else { throw ValidationError("syncbn: \(what) differs by \(d) (relative)") }
            }
            // Expected per-rank running statistics, from the closed form in double.
            var localMean = [Double](repeating: 0, count: C), localVar = [Double](repeating: 1, count: C)

            for pass in 0..<3 {
                let xPass = noGrad { x + Float(pass) * 0.3 }
                let xFull = xPass.copy(), xMine = xPass.sliced(axis: 0, rows)
                xFull.requiresGrad = true
                xMine.requiresGrad = true
                let yFull = full(xFull), ySynced = synced(xMine)
                _ = perRank(xMine.detached())
                try check("forward output (pass \(pass))", ySynced, yFull.detached().sliced(axis: 0, rows))
                try check("running mean (pass \(pass))", synced.runningMean, full.runningMean)
                try check("running variance (pass \(pass))", synced.runningVar, full.runningVar)
                try check("batches tracked", synced.batchesTracked, full.batchesTracked)

                let m = naiveMoments(xPass, samples: rows), count = Double(batch * perSample / C)
                for c in 0..<C {
                    localMean[c] = 0.9 * localMean[c] + 0.1 * m.mean[c]
                    localVar[c] = 0.9 * localVar[c] + 0.1 * m.variance[c] * count / (count - 1)
                }
                try check("per-rank running mean (pass \(pass))", perRank.runningMean, Tensor(localMean.map { Float($0) }, shape: [C]))
                try check("per-rank running variance (pass \(pass))", perRank.runningVar, Tensor(localVar.map { Float($0) }, shape: [C]))
                if pass == 0 {
                    try checkGradients(comm, synced: synced, full: full, x: xPass, xMine: xMine, xFull: xFull,
                                       ySynced: ySynced, yFull: yFull, upstream: upstream, rows: rows, check: check)
                }
            }
            try Replicas.verify(synced.namedBuffers(), over: comm, what: "synchronised running statistics")
            if n > 1 {
                let apart = relativeDifference(perRank.runningMean, full.runningMean)
                guard apart > 1e-2 else {
                    throw ValidationError("syncbn: per-rank running mean is within \(apart) of the whole batch's; the test data cannot tell them apart")
                }
            }
            try checkSingleReplica(x.sliced(axis: 0, rows), upstream: upstream.sliced(axis: 0, rows),
                                   makeNorm: makeNorm, check: check)
            print("rank \(r): selftest syncbn ok (max rel diff \(scientific(worst)))")
        }
    }

    /// Synchronised batch norm's gradient is the whole batch's: each rank's dx equals its rows
    /// of one process's dx on the whole batch (under the loss Σ over ranks of ⟨upstream, y⟩),
    /// and the weight and bias gradients are this rank's shares, which add up over ranks to
    /// the whole batch's.
    func checkGradients(_ comm: Communicator, synced: BatchNorm2d, full: BatchNorm2d, x: Tensor, xMine: Tensor,
                        xFull: Tensor, ySynced: Tensor, yFull: Tensor, upstream: Tensor, rows: Range<Int>,
                        check: (String, Tensor, Tensor) throws -> Void) throws {
        let C = Self.channels
        let g = upstream.sliced(axis: 0, rows)
        let mine = noGrad { grad(of: ySynced, wrt: [xMine, synced.weight!, synced.bias!], gradOutput: g) }
        let wholeBatch = noGrad { grad(of: yFull, wrt: [xFull, full.weight!, full.bias!], gradOutput: upstream) }
        try check("dx vs the whole batch's dx (this rank's rows)", mine[0], wholeBatch[0].sliced(axis: 0, rows))
        var shares = mine[1].array.map(Double.init) + mine[2].array.map(Double.init)
        try comm.allReduceSum(&shares)
        try check("Σ over ranks of the weight gradient", Tensor(shares[0..<C].map { Float($0) }, shape: [C]), wholeBatch[1])
        try check("Σ over ranks of the bias gradient", Tensor(shares[C...].map { Float($0) }, shape: [C]), wholeBatch[2])
    }

    /// "Exact with one rank": synchronised batch norm over a group of one replica is plain
    /// batch norm (forward, running statistics and every gradient).
    func checkSingleReplica(_ x: Tensor, upstream: Tensor, makeNorm: (ReplicaReducer?) -> BatchNorm2d,
                            check: (String, Tensor, Tensor) throws -> Void) throws {
        let alone = SingleReplica()  // BatchNorm2d holds its reducer weakly
        let synced = makeNorm(alone), plain = makeNorm(nil)
        let xs = x.copy(), xp = x.copy()
        xs.requiresGrad = true
        xp.requiresGrad = true
        let ys = synced(xs), yp = plain(xp)
        try check("one-replica forward", ys, yp)
        try check("one-replica running variance", synced.runningVar, plain.runningVar)
        let gs = grad(of: ys, wrt: [xs, synced.weight!, synced.bias!], gradOutput: upstream)
        let gp = grad(of: yp, wrt: [xp, plain.weight!, plain.bias!], gradOutput: upstream)
        for (k, what) in ["dx", "weight gradient", "bias gradient"].enumerated() {
            try check("one-replica \(what)", gs[k], gp[k])
        }
        withExtendedLifetime(alone) {}
    }
}

/// A process group of one replica (summing over it changes nothing).
final class SingleReplica: ReplicaReducer {
    func sumAcrossReplicas(_ values: inout [Double]) throws {}
}

/// Per-channel mean and biased variance (two passes, in double) over samples `samples` of a
/// `[N, …, C]` tensor: the independent reference for batch statistics.
func naiveMoments(_ x: Tensor, samples: Range<Int>) -> (mean: [Double], variance: [Double]) {
    let C = x.shape[x.rank - 1], perSample = x.count / x.shape[0]
    let first = samples.lowerBound * perSample / C, count = samples.count * perSample / C
    var mean = [Double](repeating: 0, count: C), variance = mean
    for i in first..<(first + count) { for c in 0..<C { mean[c] += Double(x.data[i * C + c]) } }
    for c in 0..<C { mean[c] /= Double(count) }
    for i in first..<(first + count) {
        for c in 0..<C {
            let d = Double(x.data[i * C + c]) - mean[c]
            variance[c] += d * d
        }
    }
    for c in 0..<C { variance[c] /= Double(count) }
    return (mean, variance)
}
