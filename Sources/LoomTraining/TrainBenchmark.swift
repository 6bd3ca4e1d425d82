import Foundation
import LoomDistributed
import LoomStorage
import LoomTensor

/// Steady-state training speed of any family's config on synthetic data (the loader is
/// measured separately by `loom bench data`): warm-up steps, then timed steps.
public enum TrainBenchmark {
    /// Images per second per process (slowest rank) over `steps` timed steps; with `profile`,
    /// also `OpProfiler`'s table of the timed steps (which the profiling itself slows a little).
    public static func run(config: RunConfig, communicator: Communicator?, warmup: Int, steps: Int,
                           profile: Bool = false) throws -> (imagesPerSecond: Double, profile: String?) {
        let rank = communicator?.rank ?? 0
        ConvAlgorithm.current = config.convAlgorithm
        let task = try config.family.makeTask(config: config, rank: rank, communicator: communicator)
        if let c = communicator { try task.broadcastNetworks(over: c) }
        let shape = config.family.sampleShape, b = config.train.batchSize
        var data = RandomStream(seed: 99, rank: rank, purpose: .data)
        let batch = Batch(images: Tensor.uniform([b] + shape, low: -1, high: 1, stream: &data),
                          labels: (0..<b).map { $0 % max(1, config.family.classes) }, indices: Array(0..<b),
                          cursor: DataCursor(), next: DataCursor())
        for _ in 0..<warmup { _ = try task.trainStep { batch } }
        try communicator?.barrier()
        if profile { OpProfiler.start() }
        defer { OpProfiler.stop() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { _ = try task.trainStep { batch } }
        var seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        if let c = communicator { seconds = try c.allReduceMax(seconds) }
        return (Double(steps * b * task.batchesPerStep) / seconds, profile ? OpProfiler.table(steps: steps) : nil)
    }
}
