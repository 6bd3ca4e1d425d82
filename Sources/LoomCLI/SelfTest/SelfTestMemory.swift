import ArgumentParser
import Foundation
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest memory`: trains a small U-Net for a few steps and prints, per step, the
/// buffer pool's system allocations and live bytes. A steady state allocates nothing new
/// and holds the same live bytes after every step (the tape frees what backward used; no
/// reference cycles keep activations alive).
struct SelfTestMemory: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "memory")

    @Option(help: "Steps to run.")
    var steps = 8

    @Argument(help: "Config overrides (default: a small conditional U-Net); e.g. model.type=dcgan …")
    var overrides: [String] = []

    func run() throws {
        let small = ["model.image_size=16", "model.base_channels=16", "model.channel_mult=[1,2]", "model.num_res_blocks=1",
                     "model.attention_resolutions=[8]", "model.num_heads=2", "model.num_classes=3", "model.dropout=0.1",
                     "train.batch_size=8", "train.clip_grad_norm=1"]
        let cfg = try RunConfig.parse(yaml: nil, name: "(selftest)", overrides: overrides.isEmpty ? small : overrides)
        let task = try cfg.family.makeTask(config: cfg, rank: 0, communicator: nil)
        var s = RandomStream(key: 5)
        let b = cfg.train.batchSize, k = max(cfg.family.classes, 1)
        let batch = Batch(images: Tensor.uniform([b] + cfg.family.sampleShape, low: -1, high: 1, stream: &s),
                          labels: (0..<b).map { $0 % k })
        for step in 1...steps {
            _ = try task.trainStep { batch }
            let pool = BufferPool.shared
            print("step \(step) allocations \(pool.systemAllocations) live \(pool.bytesInUse)")
        }
    }
}
