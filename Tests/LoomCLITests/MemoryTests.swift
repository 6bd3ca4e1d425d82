import Foundation
import Testing

@Suite struct MemoryTests {
    /// The default small U-Net, and a WGAN-GP (double backward, two critic updates per step)
    /// with spectral norm off and on.
    static let configs: [[String]] = [
        [],
        ["model.type=dcgan", "model.image_size=28", "model.in_channels=1", "model.g_channels=8", "model.d_channels=8",
         "model.z_dim=16", "train.batch_size=8", "gan.loss=wgan_gp", "model.d_norm=none", "gan.n_critic=2"],
        ["model.type=dcgan", "model.image_size=28", "model.in_channels=1", "model.g_channels=8", "model.d_channels=8",
         "model.z_dim=16", "train.batch_size=8", "gan.loss=hinge", "model.d_norm=none", "model.spectral_norm=true",
         "model.num_classes=3", "gan.r1_gamma=1"],
    ]

    @Test(arguments: configs) func steadyStateTrainingStepsNeitherAllocateNorGrow(_ overrides: [String]) throws {
        let r = try LoomBinary.loom(["selftest", "memory", "--steps", "8"] + overrides)
        #expect(r.status == 0, "\(r.stderr)")
        let rows = r.stdout.split(separator: "\n").compactMap { line -> (Int, Int)? in
            let f = line.split(separator: " ")
            guard f.count == 6, let a = Int(f[3]), let live = Int(f[5]) else { return nil }
            return (a, live)
        }
        #expect(rows.count == 8)
        // After three warm-up steps: no new system allocations, the same live bytes.
        let steady = rows.dropFirst(3)
        #expect(Set(steady.map(\.0)).count == 1, "allocations kept growing: \(rows.map(\.0))")
        #expect(Set(steady.map(\.1)).count == 1, "live bytes changed: \(rows.map(\.1))")
    }
}
