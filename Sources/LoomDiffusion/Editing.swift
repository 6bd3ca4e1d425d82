import Foundation
import LoomTensor

/// Editing given images with a trained diffusion model: SDEdit (Meng et al.: noise the
/// images to an intermediate step, then denoise) and inpainting (RePaint's basic form,
/// Lugmayr et al.: after every step the known pixels are replaced by the original noised to
/// that step, with optional resampling jumps back up).
public struct EditOptions {
    /// The fraction of the schedule to run, in [0, 1]: 0 returns the images, 1 starts from
    /// pure noise.
    public var strength = 1.0
    /// 1 where the original pixel is kept, 0 where it is generated; `[N, H, W, C]` or
    /// broadcastable to it; nil edits every pixel.
    public var mask: Tensor?
    /// Times each step is run (RePaint's r): after all but the last, x_{t'} is noised back
    /// to x_t with q(x_t | x_{t'}). 1 = no resampling.
    public var resample = 1

    public init(strength: Double = 1, mask: Tensor? = nil, resample: Int = 1) {
        self.strength = strength
        self.mask = mask
        self.resample = resample
    }
}

extension GaussianDiffusion {
    /// The sampler's timesteps (from noise to clean).
    func timesteps(of sampler: Sampler) -> [Int] {
        switch sampler {
        case .ddpm(let steps): return samplingTimesteps(steps: steps ?? timesteps)
        case .ddim(let steps, _), .dpmSolver2M(let steps): return samplingTimesteps(steps: steps)
        }
    }

    /// `images` `[N, H, W, C]` in [-1, 1] edited by `sampler` (see `EditOptions`). The steps
    /// are the sampler's usual ones below strength·T; the noise comes from `stream` (the start,
    /// then per step the sampler's noise and the known pixels' noise, in that order).
    public func edit(_ sampler: Sampler, model: Denoiser, images x0: Tensor, edit: EditOptions,
                     options: SamplingOptions = SamplingOptions(), stream: inout RandomStream) -> Tensor {
        precondition((0...1).contains(edit.strength) && edit.resample >= 1, "edit: strength \(edit.strength), resample \(edit.resample)")
        let limit = edit.strength * Double(timesteps)
        let ts = timesteps(of: sampler).filter { Double($0) < limit }
        guard let first = ts.first else { return x0.copy() }
        return noGrad {
            let n = x0.shape[0]
            func each(_ v: Double) -> [Float] { [Float](repeating: Float(v), count: n) }
            let start = Tensor.normal(x0.shape, stream: &stream)
            var x = edit.strength >= 1 ? start : qSample(x0: x0, t: [Int](repeating: first, count: n), noise: start)
            var history: DPMSolverHistory?
            for (i, t) in ts.enumerated() {
                let tPrev = i + 1 < ts.count ? ts[i + 1] : -1
                for r in 0..<edit.resample {
                    var next: Tensor
                    switch sampler {
                    case .ddpm:
                        let z = tPrev >= 0 ? Tensor.normal(x.shape, stream: &stream) : nil
                        next = ddpmStep(model: model, x: x, t: t, tPrev: tPrev, options: options, noise: z)
                    case .ddim(_, let eta):
                        let z = eta > 0 && tPrev >= 0 ? Tensor.normal(x.shape, stream: &stream) : nil
                        next = ddimStep(model: model, x: x, t: t, tPrev: tPrev, eta: eta, options: options, noise: z)
                    case .dpmSolver2M:
                        next = dpmSolverStep(model: model, x: x, t: t, tNext: tPrev, options: options, history: &history)
                    }
                    if let mask = edit.mask {
                        let known = tPrev >= 0
                            ? qSample(x0: x0, t: [Int](repeating: tPrev, count: n), noise: Tensor.normal(x0.shape, stream: &stream))
                            : x0
                        next = known * mask + next * (1 - mask)
                    }
                    if r + 1 < edit.resample && tPrev >= 0 {
                        // Back up: x_t ~ q(x_t | x_{t'}) = N(√(ᾱ_t/ᾱ_t')·x_t', (1 − ᾱ_t/ᾱ_t')·I).
                        let ratio = schedule.alphaBar(t) / schedule.alphaBar(tPrev)
                        x = perSampleLinearCombination([(next, each(ratio.squareRoot())),
                                                        (Tensor.normal(x.shape, stream: &stream), each((1 - ratio).squareRoot()))])
                    } else {
                        x = next
                    }
                }
            }
            return x
        }
    }
}
