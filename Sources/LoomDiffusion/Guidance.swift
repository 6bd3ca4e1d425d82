import LoomTensor

/// Conditioning and denoising settings shared by every sampler.
public struct SamplingOptions: Sendable {
    /// Class labels, one per item (nil for an unconditional model).
    public var labels: [Int]?
    /// Classifier-free guidance scale s: out = uncond + s·(cond − uncond); 1 is plain
    /// conditional sampling and skips the doubled batch.
    public var guidanceScale: Float
    /// The label the network was trained with for "no class" (needed when s ≠ 1).
    public var nullClass: Int?
    /// Clip every x0 prediction to [−1, 1] (pixel data scaled to that range).
    public var clipDenoised: Bool

    /// Options; the defaults are unconditional, unguided and unclipped.
    public init(labels: [Int]? = nil, guidanceScale: Float = 1, nullClass: Int? = nil, clipDenoised: Bool = false) {
        self.labels = labels
        self.guidanceScale = guidanceScale
        self.nullClass = nullClass
        self.clipDenoised = clipDenoised
    }
}

/// A denoised estimate at one step: the clean image and the noise consistent with it.
public struct DenoisedPrediction {
    /// Estimate of x0 (clipped when the options ask for it).
    public let x0: Tensor
    /// Estimate of ε, re-derived from the clipped x0 when clipping is on.
    public let epsilon: Tensor
    /// The learned-variance values v ∈ [−1, 1] per element (nil without a learned variance).
    public var v: Tensor? = nil
}

extension GaussianDiffusion {
    /// The network output with classifier-free guidance: with labels and s ≠ 1, the model
    /// runs once on a batch of 2N (conditional items first, then the same x with the null
    /// label) and returns uncond + s·(cond − uncond); otherwise it runs once as is.
    public func guidedOutput(model: Denoiser, x: Tensor, t: [Int], options: SamplingOptions) -> Tensor {
        guard let labels = options.labels, options.guidanceScale != 1 else {
            return model(x, t, options.labels)
        }
        guard let nullClass = options.nullClass else {
            preconditionFailure("classifier-free guidance (scale \(options.guidanceScale)) needs a null class")
        }
        precondition(labels.count == x.shape[0], "\(labels.count) labels for batch \(x.shape)")
        let both = model(concatenatedBatch(x, x), t + t,
                         labels + [Int](repeating: nullClass, count: labels.count))
        precondition(both.shape[0] == 2 * x.shape[0], "guided model output \(both.shape) for doubled batch")
        let (cond, uncond) = splitBatch(both)
        let out = Tensor(uninitialized: cond.shape)
        let pc = cond.data, pu = uncond.data, po = out.data, s = options.guidanceScale
        // With a learned variance only the prediction (first half of the channels) is guided;
        // the variance comes from the conditional output, as in DiT's forward_with_cfg.
        let channels = out.shape.last!, guided = learnSigma ? channels / 2 : channels
        Parallel.forRange(out.count, grain: 1 << 14) { range in
            for i in range { po[i] = i % channels < guided ? pu[i] + s * (pc[i] - pu[i]) : pc[i] }
        }
        return out
    }

    /// Runs the (guided) network at a shared timestep `t` and turns its output into x0 and ε
    /// estimates, clipping x0 if asked; off the tape.
    public func denoise(model: Denoiser, x: Tensor, t: Int, options: SamplingOptions) -> DenoisedPrediction {
        noGrad {
            let ts = [Int](repeating: t, count: x.shape[0])
            var output = guidedOutput(model: model, x: x, t: ts, options: options)
            var v: Tensor?
            if learnSigma { (output, v) = splitLearnedOutput(output) }
            precondition(output.shape == x.shape, "model output \(output.shape) does not match x \(x.shape)")
            let x0 = predictX0(from: output, xt: x, t: ts)
            if options.clipDenoised {
                let clippedX0 = clamped(x0, -1, 1)
                return DenoisedPrediction(x0: clippedX0, epsilon: epsilon(fromX0: clippedX0, xt: x, t: ts), v: v)
            }
            return DenoisedPrediction(x0: x0, epsilon: predictEpsilon(from: output, xt: x, t: ts), v: v)
        }
    }
}
