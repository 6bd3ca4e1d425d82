import LoomNN
import LoomTensor

/// The shape of the image classifier (`model.type: classifier`): a small ResNet.
public struct ClassifierConfig: Equatable, Sendable {
    /// Side and channels of the input images.
    public var imageSize = 32
    public var inChannels = 1
    /// Channels of the first stage; each later stage doubles them.
    public var width = 32
    /// Basic blocks per stage (one entry per stage; stages after the first halve the side).
    public var blocks = [1, 1, 1]
    /// Output classes.
    public var classes = 10

    public init() {}

    /// Channels of stage `s`.
    public func channels(stage s: Int) -> Int { width << s }
    /// Width of the penultimate layer (the pooled features the metrics use).
    public var featureWidth: Int { channels(stage: blocks.count - 1) }

    /// Exact parameter (and buffer) count and an activation estimate, mirroring `Classifier.init`.
    public var size: ModelSize {
        func conv(_ i: Int, _ o: Int, _ k: Int) -> Double { Double(i * o * k * k) }
        func bn(_ c: Int) -> Double { Double(4 * c + 1) }   // weight, bias, running mean and var, count
        var params = conv(inChannels, width, 3) + bn(width)
        var acts = 0.0, side = Double(imageSize), previous = width
        acts += side * side * Double(inChannels + 3 * width)
        for (s, n) in blocks.enumerated() {
            let c = channels(stage: s)
            if s > 0 { side = (side / 2).rounded(.up) }
            for b in 0..<n {
                let i = b == 0 ? previous : c
                params += conv(i, c, 3) + bn(c) + conv(c, c, 3) + bn(c)
                if i != c || (b == 0 && s > 0) { params += conv(i, c, 1) + bn(c) }
                acts += side * side * Double(8 * c)
            }
            previous = c
        }
        params += Double(featureWidth * classes + classes)
        return ModelSize(parameters: params, activationsPerImage: acts + Double(2 * featureWidth + 2 * classes))
    }
}

/// A ResNet basic block (torchvision's `BasicBlock`): conv3×3 (stride s) BN ReLU, conv3×3 BN,
/// plus the input (through conv1×1 stride s + BN when the shape changes), ReLU.
final class BasicBlock: Module, Layer {
    let conv1: Conv2d
    let bn1: BatchNorm2d
    let conv2: Conv2d
    let bn2: BatchNorm2d
    let downsample: Sequential?

    init(_ inChannels: Int, _ outChannels: Int, stride: Int, stream: inout RandomStream) {
        conv1 = Conv2d(inChannels, outChannels, kernel: 3, stride: stride, padding: 1, bias: false, stream: &stream)
        bn1 = BatchNorm2d(outChannels)
        conv2 = Conv2d(outChannels, outChannels, kernel: 3, stride: 1, padding: 1, bias: false, stream: &stream)
        bn2 = BatchNorm2d(outChannels)
        downsample = stride != 1 || inChannels != outChannels
            ? Sequential(Conv2d(inChannels, outChannels, kernel: 1, stride: stride, bias: false, stream: &stream), BatchNorm2d(outChannels))
            : nil
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let out = bn2(conv2(bn1(conv1(x)).relu()))
        return (out + (downsample?(x) ?? x)).relu()
    }
}

/// The feature network of `loom eval`: a small ResNet for `[B, H, W, C]` images in [-1, 1],
/// named as torchvision's ResNet (`conv1`, `bn1`, `layer1.0.conv1.weight`, …, `fc.weight`):
///
///     conv3×3(C→w) BN ReLU → layer1 (w) → layer2 (2w, stride 2) → layer3 (4w, stride 2)
///     → global average pool (the features) → Linear(4w → classes)
///
/// Convolutions use Kaiming-normal (fan out, ReLU) initialisation and BN weight 1, bias 0, as
/// torchvision does; the linear layer keeps PyTorch's default.
public final class Classifier: Module {
    public let config: ClassifierConfig
    let conv1: Conv2d
    let bn1: BatchNorm2d
    /// One chain of blocks per stage, named `layer1`, `layer2`, …
    let layers: [Sequential]
    let fc: Linear

    /// A classifier initialised from `stream`.
    public init(_ c: ClassifierConfig, stream: inout RandomStream) {
        precondition(!c.blocks.isEmpty && c.width > 0 && c.classes > 0, "Classifier: \(c)")
        config = c
        conv1 = Conv2d(c.inChannels, c.width, kernel: 3, padding: 1, bias: false, stream: &stream)
        bn1 = BatchNorm2d(c.width)
        var stages: [Sequential] = []
        var previous = c.width
        for (s, n) in c.blocks.enumerated() {
            let out = c.channels(stage: s)
            stages.append(Sequential((0..<n).map { b in
                BasicBlock(b == 0 ? previous : out, out, stride: b == 0 && s > 0 ? 2 : 1, stream: &stream)
            }))
            previous = out
        }
        layers = stages
        fc = Linear(c.featureWidth, c.classes, stream: &stream)
        super.init()
        for (_, m) in namedModules() {
            if let conv = m as? Conv2d {
                let w = conv.weight, fanOut = w.shape[0] * w.shape[2] * w.shape[3]
                let std = (2 / Float(fanOut)).squareRoot()
                let values = Tensor.normal(w.shape, std: std, stream: &stream)
                noGrad { w.assign(values) }
            }
        }
    }

    /// Stem and blocks, then torchvision's names for the stages.
    public override func members() -> [(String, ModuleMember)] {
        var out: [(String, ModuleMember)] = [("conv1", .module(conv1)), ("bn1", .module(bn1))]
        for (s, stage) in layers.enumerated() { out.append(("layer\(s + 1)", .module(stage))) }
        out.append(("fc", .module(fc)))
        return out
    }

    /// The pooled penultimate activations `[B, featureWidth]`.
    public func features(_ x: Tensor) -> Tensor {
        var h = bn1(conv1(x)).relu()
        for stage in layers { h = stage(h) }
        return h.mean(axes: [1, 2])
    }

    /// Logits `[B, classes]` from pooled features.
    public func logits(features: Tensor) -> Tensor { fc(features) }

    /// Logits `[B, classes]` for images `[B, H, W, C]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { fc(features(x)) }
}
