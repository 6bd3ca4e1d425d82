import LoomDiffusion
import LoomTensor
import Testing

@Suite struct EditingTests {
    let diffusion = GaussianDiffusion()
    let samplers: [Sampler] = [.ddpm(steps: 20), .ddim(steps: 20, eta: 0), .ddim(steps: 10, eta: 1), .dpmSolver2M(steps: 10)]

    /// Strength 0 runs no step: the images come back unchanged, bit for bit.
    @Test func strengthZeroReturnsTheInput() {
        for sampler in samplers {
            var s = RandomStream(key: 1)
            let out = diffusion.edit(sampler, model: Fixture.toyModel, images: Fixture.x0, edit: EditOptions(strength: 0), stream: &s)
            #expect(out.array == Fixture.x0.array, "\(sampler)")
        }
    }

    /// Inpainting: the kept pixels equal the original exactly after the last step, for every
    /// sampler and with resampling; the others are generated (they differ from the original).
    @Test func inpaintingKeepsTheKnownPixelsExactly() {
        // Keep the left column of each 2×2×3 image.
        let mask = Fixture.tensor([1, 2, 2, 3]) { ($0 / 3) % 2 == 0 ? 1 : 0 }
        let keep = (0..<Fixture.x0.count).map { ($0 / 3) % 2 == 0 }
        for (sampler, resample) in samplers.map({ ($0, 1) }) + [(Sampler.ddpm(steps: 10), 3), (.ddim(steps: 10, eta: 0.5), 2)] {
            var s = RandomStream(key: 2)
            let out = diffusion.edit(sampler, model: Fixture.toyModel, images: Fixture.x0,
                                     edit: EditOptions(strength: 1, mask: mask, resample: resample), stream: &s)
            let x0 = Fixture.x0.array, o = out.array
            #expect(zip(zip(o, x0), keep).allSatisfy { !$1 || $0.0 == $0.1 }, "\(sampler) r \(resample)")
            #expect(zip(zip(o, x0), keep).contains { !$1 && $0.0 != $0.1 }, "\(sampler) r \(resample)")
        }
    }

    /// SDEdit with the exact denoiser of a one-image data set y, ε(x_t, t) = (x_t − √ᾱ_t·y)/√(1 − ᾱ_t):
    /// every sampler must land on y from any input at any strength above 0 (the closed form
    /// of the reverse process for a point mass), and strength 0 keeps the input.
    @Test func sdeditWithTheExactDenoiserOfOneImageReturnsThatImage() {
        let y = Fixture.xt, d = diffusion
        let oracle: Denoiser = { x, t, _ in
            let per = x.count / x.shape[0], out = Tensor(uninitialized: x.shape)
            for n in 0..<x.shape[0] {
                let ab = d.schedule.alphaBar(t[n])
                for j in 0..<per {
                    out.data[n * per + j] = Float((Double(x.data[n * per + j]) - ab.squareRoot() * Double(y.data[n * per + j])) / (1 - ab).squareRoot())
                }
            }
            return out
        }
        for sampler in samplers {
            for strength in [0.1, 0.5, 1.0] {
                var s = RandomStream(key: 3)
                let out = d.edit(sampler, model: oracle, images: Fixture.x0, edit: EditOptions(strength: strength), stream: &s)
                #expect(zip(out.array, y.array).map { abs($0 - $1) }.max()! < 1e-3, "\(sampler) strength \(strength)")
            }
        }
    }
}
