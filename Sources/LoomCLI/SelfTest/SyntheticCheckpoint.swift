import Foundation
import LoomStorage
import LoomTensor

/// Checkpoint states shaped like a real run's, for `loom bench checkpoint` and the crash
/// selftest: workload W1's U-Net (`ddpm-unet-s`: base 32 channels, multipliers 1-2-2, two
/// residual blocks per level, attention at 8×8, one input channel; 244 tensors, 1,623,169
/// parameters) with its EMA and Adam state, filled from a Philox stream.
enum SyntheticCheckpoint {
    /// The state-dict names and shapes of a DDPM U-Net (diffusers-style names).
    static func unetShapes(base: Int = 32, multipliers: [Int] = [1, 2, 2], resBlocks: Int = 2,
                           attentionResolutions: [Int] = [8], inChannels: Int = 1, size: Int = 32) -> [(String, [Int])] {
        let temb = base * 4
        var shapes: [(String, [Int])] = []
        func linear(_ n: String, _ i: Int, _ o: Int) { shapes += [(n + ".weight", [o, i]), (n + ".bias", [o])] }
        func conv(_ n: String, _ i: Int, _ o: Int, _ k: Int = 3) { shapes += [(n + ".weight", [o, i, k, k]), (n + ".bias", [o])] }
        func norm(_ n: String, _ c: Int) { shapes += [(n + ".weight", [c]), (n + ".bias", [c])] }
        func resBlock(_ n: String, _ i: Int, _ o: Int) {
            norm(n + ".norm1", i); conv(n + ".conv1", i, o); linear(n + ".time_emb_proj", temb, o)
            norm(n + ".norm2", o); conv(n + ".conv2", o, o)
            if i != o { conv(n + ".conv_shortcut", i, o, 1) }
        }
        func attention(_ n: String, _ c: Int) { norm(n + ".group_norm", c); linear(n + ".to_qkv", c, 3 * c); linear(n + ".to_out", c, c) }

        linear("time_embedding.linear_1", base, temb)
        linear("time_embedding.linear_2", temb, temb)
        conv("conv_in", inChannels, base)
        var skips = [base], ch = base, resolution = size
        for (level, m) in multipliers.enumerated() {
            for b in 0..<resBlocks {
                resBlock("down_blocks.\(level).resnets.\(b)", ch, base * m)
                ch = base * m
                if attentionResolutions.contains(resolution) { attention("down_blocks.\(level).attentions.\(b)", ch) }
                skips.append(ch)
            }
            if level != multipliers.count - 1 {
                conv("down_blocks.\(level).downsamplers.0.conv", ch, ch)
                skips.append(ch)
                resolution /= 2
            }
        }
        resBlock("mid_block.resnets.0", ch, ch)
        attention("mid_block.attentions.0", ch)
        resBlock("mid_block.resnets.1", ch, ch)
        for (level, m) in multipliers.enumerated().reversed() {
            let up = multipliers.count - 1 - level
            for b in 0...resBlocks {
                resBlock("up_blocks.\(up).resnets.\(b)", ch + skips.removeLast(), base * m)
                ch = base * m
                if attentionResolutions.contains(resolution) { attention("up_blocks.\(up).attentions.\(b)", ch) }
            }
            if level != 0 {
                conv("up_blocks.\(up).upsamplers.0.conv", ch, ch)
                resolution *= 2
            }
        }
        norm("conv_norm_out", ch)
        conv("conv_out", ch, inChannels)
        return shapes
    }

    /// A tensor of `shape` with normal values from `stream`.
    static func tensor(_ shape: [Int], _ stream: inout RandomStream, scale: Float = 0.05) -> Tensor {
        let t = Tensor(uninitialized: shape)
        stream.fillNormal(t.data, count: t.count)
        for i in 0..<t.count { t.data[i] *= scale }
        return t
    }

    /// A full W1-shaped checkpoint state at `step` (model, ema, Adam with two moments and a
    /// step count per parameter, RNG streams for `worldSize` ranks, counters, config).
    /// `base` scales the network (32 is W1).
    static func state(step: Int, base: Int = 32, worldSize: Int = 1, seed: UInt64 = 1) -> CheckpointState {
        var stream = RandomStream(key: seed &+ UInt64(step))
        let shapes = unetShapes(base: base)
        let model = shapes.map { ($0.0, tensor($0.1, &stream)) }
        let ema = shapes.map { ($0.0, tensor($0.1, &stream)) }
        var adam: [(String, Tensor)] = []
        for (name, shape) in shapes {
            adam.append(("state.\(name).step", Tensor.scalar(Float(step))))
            adam.append(("state.\(name).exp_avg", tensor(shape, &stream, scale: 1e-3)))
            adam.append(("state.\(name).exp_avg_sq", tensor(shape, &stream, scale: 1e-6)))
        }
        let rng = ["noise", "dropout", "data"].reduce(into: [String: [RandomStream]]()) { out, purpose in
            out[purpose] = (0..<worldSize).map { RandomStream(key: seed &* 31 &+ UInt64($0), counter: UInt64(step) * 1000) }
        }
        return CheckpointState(networks: [(name: "model", tensors: model), (name: "ema", tensors: ema)],
                               optimizers: [(name: "adam", tensors: adam)], step: step, epoch: step / 937,
                               cursor: DataCursor(epoch: step / 937, position: (step % 937) * 64 * worldSize),
                               counters: ["ema_updates": step, "grad_accum_position": 0, "scheduler_step": step],
                               rng: rng, configYAML: "model: ddpm-unet-s\nbatch: 64\nlr: 0.0002\nema_decay: 0.9999\n",
                               loomVersion: LoomCommand.version, worldSize: worldSize,
                               metadata: ["purpose": "synthetic checkpoint"])
    }
}
