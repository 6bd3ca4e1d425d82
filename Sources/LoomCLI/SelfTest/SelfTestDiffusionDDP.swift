import ArgumentParser
import Foundation
import LoomDistributed
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest diffusion-ddp`: data-parallel diffusion steps (U-Net or DiT, class-conditional
/// with label dropout, learned variances optional) over N ranks equal one process's steps on
/// the whole global batch, whose rows draw their timesteps, noise and label dropout from the
/// rank streams in rank order: losses, weights and EMA within 1e-5 relative, replicas alike.
struct SelfTestDiffusionDDP: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diffusion-ddp")

    @Option(help: "unet or dit (both small).")
    var model = "dit"

    @Flag(help: "diffusion.learn_sigma: the hybrid loss with the variational bound term.")
    var learnSigma = false

    @OptionGroup var check: WholeBatchCheck

    var overrides: [String] {
        var o = ["model.type=\(model)", "model.image_size=8", "model.in_channels=2", "model.num_classes=3",
                 "diffusion.timesteps=50", "diffusion.label_dropout=0.3", "diffusion.learn_sigma=\(learnSigma)",
                 "optimizer.type=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.5", "ema.decay=0.9", "train.clip_grad_norm=1.0"]
        switch model {
        case "dit": o += ["model.patch_size=2", "model.hidden_size=32", "model.depth=2", "model.num_heads=2"]
        default: o += ["model.base_channels=8", "model.groups=4", "model.channel_mult=[1,2]", "model.num_res_blocks=1",
                       "model.attention_resolutions=[4]", "model.num_heads=2", "model.dropout=0"]
        }
        return o
    }

    func run() throws {
        guard ["unet", "dit"].contains(model) else { throw ValidationError("--model must be unet or dit") }
        try runOnEveryRank { comm in
            let n = comm.size, r = comm.rank
            let (local, whole) = try check.configs(overrides, ranks: n)
            let batch = check.batch
            let replica = DiffusionTask(config: local, settings: local.diffusionFamily!, rank: r,
                                        communicator: check.skipReduce ? nil : comm)
            let reference = DiffusionTask(config: whole, settings: whole.diffusionFamily!, rank: 0, communicator: nil, streams: n)
            try replica.broadcastNetworks(over: comm)

            // Global batches from a fixed stream; rank r takes rows r·B ..< (r+1)·B. grad_norm
            // is computed after the all-reduce: every rank's equals the whole batch's.
            var data = RandomStream(seed: 79, purpose: .data)
            let shape = local.family.sampleShape
            let worst = try check.compare(replica, reference, over: comm) {
                let images = Tensor.uniform([n * batch] + shape, low: -1, high: 1, stream: &data)
                return Batch(images: images, labels: (0..<n * batch).map { _ in data.nextInt(below: 3) })
            }
            print("rank \(r): selftest diffusion-ddp \(model)\(learnSigma ? " learn_sigma" : "") ok over \(n) ranks, \(check.steps) steps "
                  + "(max rel diff \(scientific(worst)))")
        }
    }
}
