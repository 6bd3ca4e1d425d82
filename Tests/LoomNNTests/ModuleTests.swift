import Testing
import LoomTensor
import LoomNN

/// A per-channel affine map x·weight + bias, built from LoomTensor's broadcasting ops.
final class Scale: Module, Layer {
    @Parameter var weight: Tensor
    @Parameter var bias: Tensor?

    init(_ n: Int, bias: Bool = true, value: Float = 1) {
        weight = Tensor(repeating: value, shape: [n])
        self.bias = bias ? Tensor(repeating: value / 10, shape: [n]) : nil
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let y = x * weight
        return bias.map { y + $0 } ?? y
    }
}

/// A parameterless layer (takes an index in `Sequential`, like PyTorch's `nn.SiLU`).
final class Doubling: Module, Layer {
    func callAsFunction(_ x: Tensor) -> Tensor { x * 2 }
}

/// A normalisation-like module with buffers.
final class Stats: Module {
    @Parameter var gamma = Tensor.ones([3])
    @Buffer(name: "running_mean") var runningMean = Tensor.zeros([3])
    @Buffer var runningVar = Tensor.ones([3])
}

/// Keys given explicitly, with the wrapper built in `init`.
final class Renamed: Module {
    @Parameter(name: "bias") var offset = Tensor.zeros([2])
    @Buffer var batches: Tensor?

    init(tracked: Bool) {
        _batches = Buffer(wrappedValue: tracked ? Tensor.zeros([]) : nil, name: "num_batches_tracked")
        super.init()
    }
}

/// A residual block: named children, an optional child, a plain (non-state) tensor.
class Block: Module {
    let conv1: Scale
    let norm = Stats()
    let skip: Scale?
    let constant = Tensor.ones([3])  // not state: not wrapped

    init(skip: Bool) {
        conv1 = Scale(3, value: 2)
        self.skip = skip ? Scale(3, bias: false) : nil
        super.init()
    }
}

/// A subclass adds members after its superclass's.
final class GatedBlock: Block {
    @Parameter var gate = Tensor.zeros([1])
}

/// The root: own parameter declared after children (PyTorch lists own slots first), arrays
/// of modules, nested arrays through a level module, and a Sequential.
final class Net: Module {
    let stem = Scale(3)
    let down: [Level]
    let head = Sequential(Scale(3), Doubling(), Scale(3, bias: false))
    @Parameter var gain = Tensor([0.5], shape: [1])

    final class Level: Module {
        let res: [Block]
        init(_ blocks: [Block]) { res = blocks; super.init() }
    }

    override init() {
        down = [Level([Block(skip: false)]), Level([Block(skip: true), GatedBlock(skip: false)])]
        super.init()
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = stem(x)
        for level in down {
            for block in level.res {
                h = block.conv1(h) * block.norm.gamma + (block.skip.map { $0(h) } ?? h)
                if let gated = block as? GatedBlock { h = h + h * gated.gate }
            }
        }
        return head(h) * gain
    }
}

@Suite struct ModuleTests {
    static let expectedParameters = [
        "gain",
        "stem.weight", "stem.bias",
        "down.0.res.0.conv1.weight", "down.0.res.0.conv1.bias", "down.0.res.0.norm.gamma",
        "down.1.res.0.conv1.weight", "down.1.res.0.conv1.bias", "down.1.res.0.norm.gamma",
        "down.1.res.0.skip.weight",
        "down.1.res.1.gate",
        "down.1.res.1.conv1.weight", "down.1.res.1.conv1.bias", "down.1.res.1.norm.gamma",
        "head.0.weight", "head.0.bias", "head.2.weight",
    ]

    @Test func namesFollowPyTorch() {
        let net = Net()
        #expect(net.namedParameters().map(\.0) == Self.expectedParameters)
        #expect(net.namedBuffers().map(\.0) == [
            "down.0.res.0.norm.running_mean", "down.0.res.0.norm.runningVar",
            "down.1.res.0.norm.running_mean", "down.1.res.0.norm.runningVar",
            "down.1.res.1.norm.running_mean", "down.1.res.1.norm.runningVar"])
        // State dict: each module's parameters, then its buffers, then its children.
        let keys = net.stateDict().map(\.0)
        #expect(keys.count == 17 + 6)
        #expect(Array(keys[3...8]) == ["down.0.res.0.conv1.weight", "down.0.res.0.conv1.bias", "down.0.res.0.norm.gamma",
                                      "down.0.res.0.norm.running_mean", "down.0.res.0.norm.runningVar",
                                      "down.1.res.0.conv1.weight"])
        #expect(net.namedModules().map(\.0).prefix(6) == ["", "stem", "down.0", "down.0.res.0", "down.0.res.0.conv1",
                                                          "down.0.res.0.norm"])
        #expect(net.head.namedChildren.map(\.0) == ["0", "1", "2"])
    }

    @Test func countsAndKinds() {
        let net = Net()
        // 1 (gain) + 6 (stem) + 3 blocks × (6 conv1 + 3 gamma) + 3 (skip) + 1 (gate) + 6 + 3 (head).
        #expect(net.parameterCount == 1 + 6 + 27 + 3 + 1 + 9)
        #expect(net.parameters().allSatisfy { $0.requiresGrad })
        #expect(net.namedBuffers().allSatisfy { !$0.1.requiresGrad })
    }

    @Test func sharedModulesAreListedOnceAsParametersButUnderEveryStateName() {
        let shared = Scale(2)
        let seq = Sequential(shared, Doubling(), shared)
        #expect(seq.namedParameters().map(\.0) == ["0.weight", "0.bias"])
        #expect(seq.stateDict().map(\.0) == ["0.weight", "0.bias", "2.weight", "2.bias"])
    }

    @Test func trainEvalPropagates() {
        let net = Net()
        #expect(net.namedModules().allSatisfy { $0.1.isTraining })
        net.eval()
        #expect(net.namedModules().allSatisfy { !$0.1.isTraining })
        net.down[1].train()
        #expect(net.down[1].res[1].norm.isTraining && !net.stem.isTraining && !net.isTraining)
        net.train()
        #expect(net.namedModules().allSatisfy { $0.1.isTraining })
    }

    @Test func gradientsZeroGradAndFreeze() {
        let net = Net()
        let x = Tensor([1, -2, 3, 0.5, 1, -1], shape: [2, 3])
        net(x).sum().backward()
        #expect(net.parameters().allSatisfy { $0.grad != nil })
        // d(sum)/d(gain) = Σ head(h): a closed form independent of the rest is the value itself.
        let out = noGrad { net(x) }
        #expect(abs(net.gain.grad!.item - out.array.reduce(0, +) / 0.5) < 1e-3)
        net.zeroGrad()
        #expect(net.parameters().allSatisfy { $0.grad == nil })

        net.requiresGrad(false)
        net.stem.requiresGrad(true)
        let y = net(x).sum()
        #expect(y.requiresGrad)
        y.backward()
        #expect(net.stem.weight.grad != nil)
        #expect(net.namedParameters().filter { !$0.0.hasPrefix("stem.") }.allSatisfy { $0.1.grad == nil })
    }

    @Test func stateDictRoundTrip() throws {
        let a = Net(), b = Net()
        var s = RandomStream(key: 5)
        for (_, t) in a.stateDict() { Init.uniform(t, low: -1, high: 1, stream: &s) }
        let weightBefore = b.stem.weight
        try b.loadStateDict(a.stateDict())
        #expect(b.stem.weight === weightBefore)  // loaded in place
        for ((ka, ta), (kb, tb)) in zip(a.stateDict(), b.stateDict()) {
            #expect(ka == kb)
            #expect(ta.array == tb.array)
            #expect(ta !== tb)
        }
        let x = Tensor([1, -2, 3], shape: [1, 3])
        #expect(noGrad { a(x) }.array == noGrad { b(x) }.array)
    }

    @Test func loadErrorsNameTheKeys() {
        let net = Net()
        let before = net.stateDict().map { $0.1.array }
        let state = net.stateDict().map { ($0.0, $0.1.copy()) }
        state[0].1.data[0] = 42
        let renamed = state.map { ($0.0 == "stem.bias" ? "stem.b" : $0.0, $0.1) }
        #expect(throws: StateDictError.keyMismatch(missing: ["stem.bias"], unexpected: ["stem.b"])) {
            try net.loadStateDict(renamed)
        }
        do {
            try net.loadStateDict(renamed)
        } catch {
            #expect("\(error)".contains("missing key(s) \"stem.bias\""))
            #expect("\(error)".contains("unexpected key(s) \"stem.b\""))
        }
        let reshaped = state.map { ($0.0, $0.0 == "head.2.weight" ? Tensor.zeros([1, 3]) : $0.1) }
        #expect(throws: StateDictError.shapeMismatch(key: "head.2.weight", expected: [3], found: [1, 3])) {
            try net.loadStateDict(reshaped, strict: false)
        }
        #expect(throws: StateDictError.duplicateKey("gain")) { try net.loadStateDict(state + [("gain", state[0].1)]) }
        // Nothing was written by the failed loads.
        #expect(net.stateDict().map { $0.1.array } == before)

        // Non-strict: loads what matches, reports the rest.
        let result = try? net.loadStateDict(renamed, strict: false)
        #expect(result?.missing == ["stem.bias"] && result?.unexpected == ["stem.b"])
        #expect(net.gain.item == 42)
    }

    @Test func reassignedParameterIsSeen() {
        let layer = Scale(2)
        _ = layer.namedParameters()  // fills the member cache
        layer.bias = nil
        #expect(layer.namedParameters().map(\.0) == ["weight"])
        layer.bias = Tensor.zeros([2])
        #expect(layer.namedParameters().map(\.0) == ["weight", "bias"])
        #expect(layer.bias!.requiresGrad)
    }

    @Test func explicitKeys() {
        #expect(Renamed(tracked: true).stateDict().map(\.0) == ["bias", "num_batches_tracked"])
        #expect(Renamed(tracked: false).stateDict().map(\.0) == ["bias"])
        #expect(Renamed(tracked: true).namedParameters().map(\.0) == ["bias"])
    }

    @Test func sequentialChainsLayers() {
        let seq = Sequential(Scale(2, bias: false, value: 3), Doubling())
        #expect(seq(Tensor([1, 2], shape: [2])).array == [6, 12])
    }

    /// BatchNorm2d → ReLU / LeakyReLU runs fused inside Sequential: the same outputs, input
    /// gradients and running statistics as applying the layers one by one, keys unchanged.
    @Test func sequentialFusesBatchNormAndActivation() {
        var s = RandomStream(key: 4)
        let x = Tensor.normal([4, 3, 3, 24], mean: 0.5, std: 2, stream: &s)
        let g = Tensor.normal(x.shape, stream: &s)
        x.requiresGrad = true
        for act in [ReLU(), LeakyReLU(0.2)] as [any Layer] {
            let norm = BatchNorm2d(24), twin = BatchNorm2d(24)
            let seq = Sequential(norm, act)
            #expect(seq.namedParameters().map(\.0) == ["0.weight", "0.bias"])
            let fused = seq(x), separate = act(twin(x))
            #expect(fused.array == separate.array)
            #expect(grad(of: fused, wrt: [x], gradOutput: g)[0].array == grad(of: separate, wrt: [x], gradOutput: g)[0].array)
            #expect(norm.runningVar.array == twin.runningVar.array && norm.runningMean.array == twin.runningMean.array)
            #expect(fused.array.contains { $0 < 0 } == (act is LeakyReLU))
        }
    }
}
