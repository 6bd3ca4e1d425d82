import ArgumentParser
import Foundation
import LoomDistributed
import LoomNN
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest vae-ddp`: data-parallel VAE steps over N ranks equal one process's steps on
/// the whole global batch (every rank's reparameterisation noise drawn from its own stream,
/// in rank order): metrics and every weight within 1e-5 relative, the replicas bitwise alike.
struct SelfTestVAEDDP: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae-ddp")

    @Option(help: "kl_autoencoder (a small W4), mlp_vae (Gaussian likelihood, β 0.5) or conv_vae (Bernoulli).")
    var model = "kl_autoencoder"

    @OptionGroup var check: WholeBatchCheck

    var overrides: [String] {
        var o = ["model.type=\(model)", "model.image_size=16", "model.in_channels=1", "optimizer.type=sgd",
                 "optimizer.lr=0.002", "optimizer.momentum=0.5"]
        switch model {
        case "kl_autoencoder": o += ["model.base_channels=8", "model.groups=4", "model.latent_channels=2", "vae.kl_weight=0.01"]
        case "mlp_vae": o += ["model.hidden=32", "model.latent_dim=4", "vae.likelihood=gaussian", "vae.sigma=0.3", "vae.beta=0.5"]
        default: o += ["model.hidden=4", "model.latent_dim=8"]
        }
        return o
    }

    func run() throws {
        guard ["kl_autoencoder", "mlp_vae", "conv_vae"].contains(model) else {
            throw ValidationError("--model must be kl_autoencoder, mlp_vae or conv_vae")
        }
        try runOnEveryRank { comm in
            let n = comm.size, r = comm.rank
            let (local, whole) = try check.configs(overrides, ranks: n)
            let batch = check.batch
            let replica = VAETask(config: local, settings: local.vaeFamily!, rank: r,
                                  communicator: check.skipReduce ? nil : comm)
            let reference = VAETask(config: whole, settings: whole.vaeFamily!, rank: 0, communicator: nil, streams: n)
            try replica.broadcastNetworks(over: comm)

            // Global batches from a fixed stream; rank r takes rows r·B ..< (r+1)·B.
            var data = RandomStream(seed: 78, purpose: .data)
            let shape = local.family.sampleShape
            let worst = try check.compare(replica, reference, over: comm) {
                Batch(images: Tensor.uniform([n * batch] + shape, low: -1, high: 1, stream: &data), labels: [])
            }
            print("rank \(r): selftest vae-ddp \(model) ok over \(n) ranks, \(check.steps) steps "
                  + "(max rel diff \(scientific(worst)))")
        }
    }
}
