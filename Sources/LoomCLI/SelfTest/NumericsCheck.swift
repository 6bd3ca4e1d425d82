import ArgumentParser
import Foundation
import LoomDiffusion
import LoomModels
import LoomNN
import LoomStorage
import LoomTensor
import LoomTraining

/// The family-specific parts of `loom selftest numerics`: each writes the random draws its
/// training step will make (predicted from copies of the task's streams, in the step's order)
/// and its forward outputs, and returns the streams as the step must leave them.
enum NumericsCheck {
    /// The guidance scale of the sampler steps of a conditional model.
    static let guidance: Float = 3

    /// Moves every tensor of a network group off its initial value: weights (rank ≥ 2) by
    /// N(0, (0.5/√fan-in)²), biases and norm weights by N(0, 0.1²), running means by N(0, 0.1²),
    /// running variances by a factor exp(N(0, 0.2²)); `num_batches_tracked` stays.
    static func perturb(_ tensors: [(String, Tensor)], stream: inout RandomStream) {
        for (name, t) in tensors where t.count > 0 && !name.hasSuffix("num_batches_tracked") {
            let r = Tensor.normal(t.shape, stream: &stream)
            let p = t.data, q = r.data
            if name.hasSuffix("running_var") {
                for i in 0..<t.count { p[i] *= Foundation.exp(0.2 * q[i]) }
            } else if t.rank < 2 || name.hasSuffix("running_mean") {
                for i in 0..<t.count { p[i] += 0.1 * q[i] }
            } else {
                let scale = 0.5 / Float(t.count / t.shape[0]).squareRoot()
                for i in 0..<t.count { p[i] += scale * q[i] }
            }
        }
    }

    /// Copies every parameter's gradient as backward hands it over (the parameters' gradient
    /// hooks, free without a reducer), by network group and name.
    final class GradientCapture {
        private var hooked: [Tensor] = []
        private(set) var gradients: [(network: String, name: String, gradient: Tensor)] = []

        init(_ task: TrainingTask) {
            for (network, tensors) in task.networks {
                for (name, t) in tensors where t.requiresGrad {
                    hooked.append(t)
                    let index = gradients.count
                    gradients.append((network, name, Tensor.zeros(t.shape)))
                    t.onGradientReady = { [unowned self] p in
                        if let g = p.grad { self.gradients[index].gradient = g.copy() }
                    }
                }
            }
        }

        /// Removes the hooks.
        func stop() { for t in hooked { t.onGradientReady = nil } }
    }

    // MARK: Diffusion

    static func diffusion(_ task: DiffusionTask, images: Tensor, labels: [Int], out: NumericsOutput) throws -> [RandomStream] {
        let settings = task.settings, d = task.diffusion, n = images.shape[0], classes = settings.classes
        guard task.config.train.gradAccum == 1 else { throw ValidationError("selftest numerics needs train.grad_accum 1") }
        var labelStream = task.labelStreams[0], noiseStream = task.noiseStreams[0]
        let stepLabels = classes > 0
            ? labelDropout(labels: labels, p: settings.diffusion.labelDropout, nullClass: classes, stream: &labelStream) : nil
        let t = (0..<n).map { _ in noiseStream.nextInt(below: d.timesteps) }
        let noise = d.trainingNoise(shape: images.shape, stream: &noiseStream)
        try out.input("t", ints: t)
        try out.input("noise", noise)
        if let stepLabels { try out.input("step_labels", ints: stepLabels) }

        task.model.eval()   // no dropout draws (W1 and W2 have none)
        let output = noGrad { task.model(d.qSample(x0: images, t: t, noise: noise), timesteps: t, labels: stepLabels) }
        task.model.train()
        try out.forward("output", output)

        let s = d.schedule
        for (name, table) in [("betas", s.betas), ("alphas_cumprod", s.alphasCumprod), ("alphas_cumprod_prev", s.alphasCumprodPrev),
                              ("sqrt_alphas_cumprod", s.sqrtAlphasCumprod), ("sqrt_one_minus_alphas_cumprod", s.sqrtOneMinusAlphasCumprod),
                              ("sqrt_recip_alphas_cumprod", s.sqrtRecipAlphasCumprod), ("sqrt_recipm1_alphas_cumprod", s.sqrtRecipm1AlphasCumprod),
                              ("posterior_variance", s.posteriorVariance), ("posterior_log_variance_clipped", s.posteriorLogVarianceClipped),
                              ("posterior_mean_coef1", s.posteriorMeanCoef1), ("posterior_mean_coef2", s.posteriorMeanCoef2)] {
            try out.result("schedule", name, doubles: table)
        }
        for steps in [50, 7] { try out.result("timesteps", "trailing_\(steps)", doubles: d.samplingTimesteps(steps: steps).map(Double.init)) }
        try samplers(task, count: n, out: out)
        return [noiseStream, labelStream, task.model.dropoutRandom.stream]
    }

    /// One step of each sampler from the EMA weights on fixed inputs: DDPM on the full chain
    /// (999 → 998), respaced (999 → 979) and its last step (0 → clean); DDIM η = 0 and η = 1
    /// (999 → 979); DPM-Solver++(2M) first order (999 → 979), then second order (979 → 959)
    /// with that step's history. x0 clipped to [−1, 1], guidance 3 for conditional models.
    static func samplers(_ task: DiffusionTask, count n: Int, out: NumericsOutput) throws {
        let settings = task.settings, d = task.diffusion, classes = settings.classes
        var s = RandomStream(key: 0)
        let net = settings.network.make(stream: &s)
        try task.ema.copy(into: net)
        net.eval()
        let model: Denoiser = { x, t, y in net(x, timesteps: t, labels: y) }
        var stream = RandomStream(seed: 7, purpose: .sampling)
        let x = Tensor.normal([n] + settings.sampleShape, stream: &stream)
        let z = Tensor.normal([n] + settings.sampleShape, stream: &stream)
        var options = SamplingOptions(clipDenoised: true)
        if classes > 0 {
            options.labels = (0..<n).map { $0 % classes }
            options.nullClass = classes
            options.guidanceScale = guidance
            try out.input("sample_labels", ints: options.labels!)
        }
        try out.input("sample_x", x)
        try out.input("sample_noise", z)
        try out.inputs.setAttribute("guidance", Double(options.guidanceScale))
        let T = d.timesteps, ts = d.samplingTimesteps(steps: 50)
        try out.result("sampler", "ddpm", d.ddpmStep(model: model, x: x, t: T - 1, tPrev: T - 2, options: options, noise: z))
        try out.result("sampler", "ddpm_respaced", d.ddpmStep(model: model, x: x, t: ts[0], tPrev: ts[1], options: options, noise: z))
        try out.result("sampler", "ddpm_last", d.ddpmStep(model: model, x: x, t: 0, tPrev: -1, options: options, noise: nil))
        try out.result("sampler", "ddim_eta0", d.ddimStep(model: model, x: x, t: ts[0], tPrev: ts[1], eta: 0, options: options, noise: nil))
        try out.result("sampler", "ddim_eta1", d.ddimStep(model: model, x: x, t: ts[0], tPrev: ts[1], eta: 1, options: options, noise: z))
        var history: DPMSolverHistory?
        let first = d.dpmSolverStep(model: model, x: x, t: ts[0], tNext: ts[1], options: options, history: &history)
        try out.result("sampler", "dpm_solver_first", first)
        try out.result("sampler", "dpm_solver_second", d.dpmSolverStep(model: model, x: first, t: ts[1], tNext: ts[2], options: options, history: &history))
    }

    // MARK: GANs

    static func gan(_ task: GANTask, images: Tensor, labels: [Int], out: NumericsOutput) throws -> [RandomStream] {
        let settings = task.settings, n = images.shape[0]
        guard settings.gan.nCritic == 1, settings.gan.loss == .bce, settings.gan.r1Gamma == 0, task.noise.count == 1 else {
            throw ValidationError("selftest numerics checks W3's step: gan.loss bce, n_critic 1, no R1")
        }
        var noise = task.noise[0]
        let z = Tensor.normal([n, settings.model.zDim], stream: &noise)
        try out.input("z", z)
        let y = settings.model.classes > 0 ? labels : nil
        // Training-mode outputs (batch statistics); the running statistics they update are put back.
        let g = task.generator, dnet = task.discriminator
        let saved = (g.namedBuffers() + dnet.namedBuffers()).map { ($0.1, $0.1.copy()) }
        let fake = noGrad { g(z, labels: y) }
        try out.forward("fake", fake)
        try out.forward("d_real", noGrad { dnet(images, labels: y) })
        try out.forward("d_fake", noGrad { dnet(fake, labels: y) })
        for (live, copy) in saved { live.data.update(from: copy.data, count: live.count) }
        // G's EMA in eval mode (running statistics), what sampling uses.
        var s = RandomStream(key: 0)
        let averaged = DCGANGenerator(settings.model, stream: &s)
        try task.ema.copy(into: averaged)
        averaged.eval()
        try out.forward("fake_ema", noGrad { averaged(z, labels: y) })
        return [noise]
    }

    // MARK: VAEs

    static func vae(_ task: VAETask, images: Tensor, out: NumericsOutput) throws -> [RandomStream] {
        guard task.discriminator == nil, task.noise.count == 1 else { throw ValidationError("selftest numerics checks W4's step: vae.disc_weight 0") }
        var noise = task.noise[0]
        let eps = Tensor.normal([images.shape[0]] + task.model.latentShape, stream: &noise)
        try out.input("eps", eps)
        let posterior = noGrad { task.model.encode(images) }
        try out.forward("mean", posterior.mean)
        try out.forward("log_variance", posterior.logVariance)
        try out.forward("reconstruction", noGrad { task.model.decode(posterior.sample(epsilon: eps)) })
        return [noise]
    }
}

/// Where `loom selftest numerics` writes: the inputs file's root and the results file's groups.
final class NumericsOutput {
    let inputs: H5Group
    let results: H5Group
    private var groups: [String: H5Group] = [:]

    init(inputs: H5Group, results: H5Group) {
        self.inputs = inputs
        self.results = results
    }

    private func group(_ path: [String]) throws -> H5Group {
        var g = results, key = ""
        for part in path {
            key += "/" + part
            if let known = groups[key] { g = known; continue }
            g = try g.createGroup(part)
            groups[key] = g
        }
        return g
    }

    func input(_ name: String, _ t: Tensor) throws { try inputs.write(name, values: t.array, shape: t.shape) }
    func input(_ name: String, ints: [Int]) throws { try inputs.write(name, values: ints.map(Int64.init), shape: [ints.count]) }
    func forward(_ name: String, _ t: Tensor) throws { try result("forward", name, t) }
    func result(_ group: String, _ name: String, _ t: Tensor) throws { try self.group([group]).write(name, values: t.array, shape: t.shape) }
    func result(_ group: String, _ name: String, doubles: [Double]) throws { try self.group([group]).write(name, values: doubles, shape: [doubles.count]) }

    /// The training step's metrics, one float64 value each.
    func metrics(_ metrics: [(String, Double)]) throws {
        for (name, value) in metrics { try result("metrics", name, doubles: [value]) }
    }

    /// Every captured gradient under `/grad/<network>/<name>`.
    func gradients(_ grads: [(network: String, name: String, gradient: Tensor)]) throws {
        for (network, name, g) in grads { try group(["grad", network]).write(name, values: g.array, shape: g.shape) }
    }

    /// The batch-norm statistics of every network after the step, under `/after/<network>/<name>`.
    func statistics(_ networks: [(name: String, tensors: [(String, Tensor)])]) throws {
        for (network, tensors) in networks {
            for (name, t) in tensors where ["running_mean", "running_var", "num_batches_tracked"].contains(where: { name.hasSuffix($0) }) {
                try group(["after", network]).write(name, values: t.array, shape: t.shape)
            }
        }
    }
}
