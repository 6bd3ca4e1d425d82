import ArgumentParser
import Foundation
import LoomModels
import LoomStorage
import LoomTensor
import LoomTraining

/// `loom selftest forward CKPT IN.h5 OUT.h5`: the denoiser of a diffusion checkpoint (its
/// `/ema` weights) on the inputs `x` ([N, H, W, C] float32), `t` and `labels` (int64, N each;
/// labels optional) of IN.h5, written as `output`: for numerics checks against a second
/// implementation (the W1/W2 checks of bench/pytorch/numerics.py use `selftest numerics`).
struct SelfTestForward: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "forward")

    @Argument var checkpoint: String
    @Argument var input: String
    @Argument var output: String

    func run() throws {
        let state = try CheckpointStore.read(checkpoint)
        let cfg = try RunConfig.parse(yaml: state.configYAML, name: "\(checkpoint) (/meta/config)")
        guard let family = cfg.diffusionFamily, let weights = state.network("ema") ?? state.network("model") else {
            throw ValidationError("\(checkpoint) is not a diffusion checkpoint with /ema or /model weights")
        }
        var s = RandomStream(key: 0)
        let net = family.network.make(stream: &s)
        try net.loadStateDict(weights)
        net.eval()
        let file = try H5File.open(input)
        let shape = try file.root.openDataset("x").shape
        let x = Tensor(try file.root.read("x", as: Float.self), shape: shape)
        let t = try file.root.read("t", as: Int64.self).map { Int($0) }
        let labels = try? file.root.read("labels", as: Int64.self).map { Int($0) }
        file.close()
        let y = noGrad { net(x, timesteps: t, labels: labels) }
        let out = try H5File.create(output, overwrite: true)
        try out.root.write("output", values: y.array, shape: y.shape)
        out.close()
    }
}
