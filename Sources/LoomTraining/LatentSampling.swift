import Foundation
import LoomDiffusion
import LoomModels
import LoomTensor

/// `loom sample` for latent diffusion: the denoiser samples (or edits) scaled latents and the
/// first stage decodes them, so every output is an image.
enum LatentSampling {
    /// Images `[N, H, W, C]` in [-1, 1]: `request.count` samples, or the `--init` images edited
    /// in latent space (SDEdit from their posterior means; inpainting with the mask reduced to
    /// the latent grid, and the kept pixels pasted back exactly after decoding).
    static func sample(config: RunConfig, family: DiffusionFamily, model: any DenoisingNetwork, space: LatentSpace,
                       request: SampleRequest) throws -> Tensor {
        let stage = space.stage
        let latents: Tensor, images: Tensor
        if let pixels = request.initImages {
            guard Array(pixels.shape.dropFirst()) == stage.imageShape else {
                throw SampleOptionError("--init images are \(Array(pixels.shape.dropFirst())) but the first stage \(stage.file) encodes \(stage.imageShape) ([H, W, C])")
            }
            let mask = request.mask.map { latentMask($0, imageShape: stage.imageShape, latentShape: stage.latentShape) }
            let edit = EditOptions(strength: request.strength ?? 1, mask: mask, resample: request.resample ?? 1)
            latents = DiffusionSampling.edit(config: config, family: family, model: model, images: stage.encode(pixels, scale: space.scale),
                                             edit: edit, seed: request.seed,
                                             labels: request.label.map { [Int](repeating: $0, count: pixels.shape[0]) } ?? request.initLabels,
                                             guidance: request.guidance)
            let decoded = stage.decode(scaled: latents, scale: space.scale)
            images = request.mask.map { m in noGrad { pixels * m + decoded * (1 - m) } } ?? decoded
        } else {
            latents = DiffusionSampling.sample(config: config, family: family, model: model, count: request.count, seed: request.seed,
                                               label: request.label, guidance: request.guidance)
            images = stage.decode(scaled: latents, scale: space.scale)
        }
        request.latentSink?.latents = latents
        return images
    }

    /// A pixel keep-mask `[M, H, W, C]` (1 keeps) reduced to the latent grid `[M, h, w, c]`:
    /// a latent cell is kept only when every pixel (and channel) of its block is kept.
    static func latentMask(_ mask: Tensor, imageShape: [Int], latentShape: [Int]) -> Tensor {
        let m = mask.shape[0], (H, W, C) = (imageShape[0], imageShape[1], imageShape[2])
        let (h, w, c) = (latentShape[0], latentShape[1], latentShape[2])
        let fy = H / h, fx = W / w
        let out = Tensor(uninitialized: [m, h, w, c])
        for i in 0..<m {
            for y in 0..<h {
                for x in 0..<w {
                    var keep: Float = 1
                    for dy in 0..<fy {
                        for dx in 0..<fx {
                            let base = ((i * H + y * fy + dy) * W + x * fx + dx) * C
                            for k in 0..<C where mask.data[base + k] < 0.5 { keep = 0 }
                        }
                    }
                    for k in 0..<c { out.data[((i * h + y) * w + x) * c + k] = keep }
                }
            }
        }
        return out
    }
}
