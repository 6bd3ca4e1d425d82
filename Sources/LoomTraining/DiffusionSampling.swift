import Foundation
import LoomDiffusion
import LoomModels
import LoomNN
import LoomTensor

/// Sampling from a diffusion model, shared by training previews and `loom sample`.
public enum DiffusionSampling {
    /// The sampler named by the config (`sample.sampler`, `sample.steps`, `sample.eta`).
    public static func sampler(_ s: RunConfig.SampleSettings, timesteps: Int) -> Sampler {
        switch s.sampler {
        case .ddpm: return .ddpm(steps: s.steps >= timesteps ? nil : s.steps)
        case .dpm_solver: return .dpmSolver2M(steps: s.steps)
        case .ddim: return .ddim(steps: s.steps, eta: s.eta)
        }
    }

    /// `count` samples `[count, H, W, C]` from `model`: images `first ..< first + count` of a
    /// run seeded with `seed` (default the config's), each drawing its noise from its own
    /// stream (`IndexedNoise`), so any split of a run gives the same samples. Images in
    /// [-1, 1], or for latent diffusion (`first_stage`) scaled latents, unclipped (decode them
    /// with `LatentSpace`). Conditional models get the label index mod classes (or `label` for
    /// all) and the config's guidance scale.
    public static func sample(config: RunConfig, family: DiffusionFamily, model: any DenoisingNetwork, count: Int, seed: UInt64? = nil,
                              label: Int? = nil, guidance: Double? = nil, first: Int = 0) -> Tensor {
        let m = family.network
        let diffusion = family.diffusion.gaussianDiffusion  // weighting and offset noise only matter in training
        let indices = first..<(first + count)
        var noise = IndexedNoise(seed: seed ?? UInt64(bitPattern: Int64(config.seed)), indices: indices)
        let start = noise.normal([m.imageSize, m.imageSize, m.inChannels])
        let options = samplingOptions(config: config, family: family,
                                      labels: IndexedNoise.labels(indices: indices, classes: m.classes, label: label),
                                      count: count, guidance: guidance)
        model.eval()
        defer { model.train() }
        let out = diffusion.sample(sampler(config.sample, timesteps: family.diffusion.timesteps),
                                   model: { x, t, y in model(x, timesteps: t, labels: y) },
                                   noise: start, options: options) { noise.normal(shape: $0) }
        return clamped(out, family: family)
    }

    /// `images` edited by the config's sampler (SDEdit and/or inpainting, see `EditOptions`),
    /// conditioned on `labels` (default: 0, 1, 2, … in turn) for conditional models. For latent
    /// diffusion `images` and the result are scaled latents.
    public static func edit(config: RunConfig, family: DiffusionFamily, model: any DenoisingNetwork, images: Tensor,
                            edit: EditOptions, seed: UInt64? = nil, labels: [Int]? = nil, guidance: Double? = nil) -> Tensor {
        let n = images.shape[0]
        let diffusion = family.diffusion.gaussianDiffusion
        var stream = RandomStream(seed: seed ?? UInt64(bitPattern: Int64(config.seed)), purpose: .sampling)
        let options = samplingOptions(config: config, family: family, labels: labels, count: n, guidance: guidance)
        model.eval()
        defer { model.train() }
        let out = diffusion.edit(sampler(config.sample, timesteps: family.diffusion.timesteps),
                                 model: { x, t, y in model(x, timesteps: t, labels: y) },
                                 images: images, edit: edit, options: options, stream: &stream)
        return clamped(out, family: family)
    }

    /// Images clamped to [-1, 1]; latents as they are.
    static func clamped(_ out: Tensor, family: DiffusionFamily) -> Tensor {
        family.firstStage == nil ? noGrad { out.clamped(min: -1, max: 1) } : out
    }

    /// x0 clipped to [-1, 1] for images (not for latents, as latent diffusion) and, for a
    /// conditional model, `labels` (default 0, 1, 2, … in turn) with the null class and the
    /// guidance scale (default the config's).
    static func samplingOptions(config: RunConfig, family: DiffusionFamily, labels: [Int]?, count: Int, guidance: Double?) -> SamplingOptions {
        let classes = family.classes
        var options = SamplingOptions(clipDenoised: family.firstStage == nil)
        if classes > 0 {
            options.labels = labels ?? (0..<count).map { $0 % classes }
            options.nullClass = classes
            options.guidanceScale = Float(guidance ?? config.sample.guidance)
        }
        return options
    }
}
