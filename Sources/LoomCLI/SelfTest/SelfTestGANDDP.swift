import ArgumentParser
import Foundation
import LoomDistributed
import LoomNN
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest gan-ddp`: data-parallel GAN steps over N ranks equal one process's steps on
/// the whole global batch (every rank's noise drawn from its own stream, in rank order):
/// metrics, G, D, G's EMA and every buffer (batch-norm statistics, spectral-norm vectors)
/// within 1e-5 relative, and the replicas bitwise alike.
struct SelfTestGANDDP: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gan-ddp")

    @Option(help: "bce (W3), wgan_gp (gradient penalty, 2 critic updates) or hinge (spectral norm, projection cGAN, R1).")
    var loss = "bce"

    @OptionGroup var check: WholeBatchCheck

    var overrides: [String] {
        var o = ["model.type=dcgan", "model.image_size=28", "model.in_channels=1", "model.z_dim=16",
                 "model.g_channels=8", "model.d_channels=8", "optimizer.type=sgd", "optimizer.lr=0.02",
                 "optimizer.momentum=0.5", "ema.decay=0.9", "ema.warmup=none", "gan.loss=\(loss)"]
        // G (and W3's D) use batch norm: a step equals the whole-batch step only when the
        // statistics are taken over the whole batch, i.e. synchronised.
        o += ["train.sync_batch_norm=true"]
        switch loss {
        case "wgan_gp": o += ["model.d_norm=none", "gan.n_critic=2"]
        case "hinge": o += ["model.d_norm=none", "model.spectral_norm=true", "model.num_classes=3", "gan.r1_gamma=1"]
        default: break
        }
        return o
    }

    func run() throws {
        guard ["bce", "wgan_gp", "hinge"].contains(loss) else { throw ValidationError("--loss must be bce, wgan_gp or hinge") }
        try runOnEveryRank { comm in
            let n = comm.size, r = comm.rank
            let (local, whole) = try check.configs(overrides, ranks: n)
            let batch = check.batch
            let replica = GANTask(config: local, settings: local.ganFamily!, rank: r,
                                  communicator: check.skipReduce ? nil : comm)
            let reference = GANTask(config: whole, settings: whole.ganFamily!, rank: 0, communicator: nil, streams: n)
            try replica.broadcastNetworks(over: comm)

            // Global batches from a fixed stream; rank r takes rows r·B ..< (r+1)·B.
            var data = RandomStream(seed: 77, purpose: .data)
            let shape = local.family.sampleShape, classes = max(local.family.classes, 1)
            let worst = try check.compare(replica, reference, over: comm) {
                let images = Tensor.uniform([n * batch] + shape, low: -1, high: 1, stream: &data)
                return Batch(images: images, labels: (0..<(n * batch)).map { ($0 * 7 + 3) % classes })
            }
            print("rank \(r): selftest gan-ddp \(loss) ok over \(n) ranks, \(check.steps) steps "
                  + "(max rel diff \(scientific(worst)))")
        }
    }
}
