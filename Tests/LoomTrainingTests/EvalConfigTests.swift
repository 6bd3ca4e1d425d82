import Foundation
import LoomModels
import LoomTensor
import LoomTraining
import Testing

/// The classifier family's and the `eval:` section's keys, ranges and cross-key rules, checked
/// at load with one-line errors naming the key.
@Suite struct EvalConfigTests {
    static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("configs").path

    func error(_ file: String?, _ overrides: [String]) -> String? {
        do { _ = try RunConfig.load(file: file, overrides: overrides); return nil } catch { return "\(error)" }
    }

    @Test func classifierConfigLoadsAndCountsItsParameters() throws {
        let c = try RunConfig.load(file: Self.configs + "/classifier-fashion.yaml")
        let f = try #require(c.classifierFamily)
        #expect(f.model.width == 16 && f.model.blocks == [1, 1, 1] && f.model.featureWidth == 64 && f.classes == 10)
        // ModelSize counts exactly what the network holds (parameters and buffers).
        var s = RandomStream(key: 1)
        let net = Classifier(f.model, stream: &s)
        let held = net.stateDict().reduce(0) { $0 + $1.1.count }
        #expect(Double(held) == f.modelSize.parameters, "state dict \(held), ModelSize \(f.modelSize.parameters)")
        // torchvision's ResNet names.
        let names = Set(net.stateDict().map(\.0))
        for name in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                     "layer3.0.bn2.num_batches_tracked", "fc.weight", "fc.bias"] {
            #expect(names.contains(name), "\(name) missing")
        }
    }

    @Test func evalKeysAreCheckedAtLoad() {
        let quick = Self.configs + "/ddpm-fashion-quick.yaml"
        #expect(error(quick, ["eval.every=100", "eval.features=clf"]) == nil)
        #expect(error(quick, ["eval.every=100"])?.contains("'eval.features' must name a classifier checkpoint") == true)
        #expect(error(quick, ["eval.every=30", "eval.features=clf"])?.contains("'eval.every' must be a multiple of logging.every (25), found 30") == true)
        #expect(error(quick, ["eval.n=5"])?.contains("'eval.n' must be between 20 and 100000, found 5") == true)
        #expect(error(quick, ["eval.batch=0"])?.contains("'eval.batch' must be between 1 and 10000") == true)
        #expect(error(quick, ["eval.evry=1"])?.contains("unknown key 'eval.evry'; did you mean 'eval.every'?") == true)
        #expect(error(Self.configs + "/classifier-fashion.yaml", ["eval.every=100", "eval.features=clf"])?
            .contains("'eval.every' does not apply to model.type classifier") == true)
    }

    @Test func classifierKeysAreCheckedAtLoad() {
        let file = Self.configs + "/classifier-fashion.yaml"
        #expect(error(file, ["model.blocks=[]"])?.contains("'model.blocks' must be a list of 1 to 6 integers") == true)
        #expect(error(file, ["model.num_classes=1"])?.contains("'model.num_classes' must be between 2 and 100000") == true)
        #expect(error(file, ["model.width=1024", "model.blocks=[1,1,1,1,1,1]"])?.contains("more than 8192") == true)
        #expect(error(file, ["diffusion.timesteps=10"])?.contains("'diffusion.timesteps' does not apply to model.type classifier") == true)
        #expect(error(file, ["model.base_channels=8"])?.contains("'model.base_channels' does not apply to model.type classifier") == true)
        #expect(error(file, ["train.grad_accum=2"])?.contains("'train.grad_accum' does not apply to model.type classifier") == true)
        #expect(error(file, ["classifier.label_smoothing=1"])?.contains("'classifier.label_smoothing' must be in [0, 1)") == true)
        #expect(error(Self.configs + "/ddpm-fashion-quick.yaml", ["model.blocks=[1]"])?.contains("'model.blocks' does not apply to model.type unet") == true)
    }
}
