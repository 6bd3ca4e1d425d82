import LoomTensor

/// Group normalisation over `[N, …, C]` (PyTorch `nn.GroupNorm`; weight 1, bias 0).
public final class GroupNorm: Module, Layer {
    @Parameter public var weight: Tensor?
    @Parameter public var bias: Tensor?
    public let groups: Int
    public let eps: Float

    public init(groups: Int, channels: Int, eps: Float = 1e-5, affine: Bool = true) {
        precondition(channels % groups == 0, "GroupNorm: \(channels) channels do not split into \(groups) groups")
        _weight = Parameter(wrappedValue: affine ? Tensor.ones([channels]) : nil)
        _bias = Parameter(wrappedValue: affine ? Tensor.zeros([channels]) : nil)
        self.groups = groups
        self.eps = eps
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps) }

    /// SiLU(GroupNorm(x)) in one fused pass (the U-Net's most common pair).
    public func withSiLU(_ x: Tensor) -> Tensor { groupNormSiLU(x, groups: groups, weight: weight, bias: bias, eps: eps) }
}

/// Layer normalisation over the last axis (PyTorch `nn.LayerNorm`, optionally without affine).
public final class LayerNorm: Module, Layer {
    @Parameter public var weight: Tensor?
    @Parameter public var bias: Tensor?
    public let eps: Float

    public init(_ dimension: Int, eps: Float = 1e-5, affine: Bool = true) {
        _weight = Parameter(wrappedValue: affine ? Tensor.ones([dimension]) : nil)
        _bias = Parameter(wrappedValue: affine ? Tensor.zeros([dimension]) : nil)
        self.eps = eps
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// Batch normalisation of NHWC activations (PyTorch `nn.BatchNorm2d`). Per-rank statistics by
/// default; with a `reducer` (synchronised batch norm, PyTorch's `SyncBatchNorm`) the batch
/// statistics are summed over all replicas first, and so are the gradient's per-channel sums
/// in backward, so every rank gets its rows of the whole batch's gradient.
public final class BatchNorm2d: Module, Layer {
    @Parameter public var weight: Tensor?
    @Parameter public var bias: Tensor?
    @Buffer(name: "running_mean") public var runningMean = Tensor.zeros([1])
    @Buffer(name: "running_var") public var runningVar = Tensor.zeros([1])
    @Buffer(name: "num_batches_tracked") public var batchesTracked = Tensor.zeros([])
    public let momentum: Float
    public let eps: Float
    /// Set for synchronised batch norm (the communicator); nil for per-rank statistics.
    public weak var reducer: ReplicaReducer?

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true) {
        _weight = Parameter(wrappedValue: affine ? Tensor.ones([channels]) : nil)
        _bias = Parameter(wrappedValue: affine ? Tensor.zeros([channels]) : nil)
        self.momentum = momentum
        self.eps = eps
        super.init()
        runningMean = Tensor.zeros([channels])
        runningVar = Tensor.ones([channels])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { callAsFunction(x, then: .none) }

    /// The normalised `x` with `activation` applied in the same passes (`Sequential` uses it
    /// for a BatchNorm2d followed by ReLU or LeakyReLU).
    public func callAsFunction(_ x: Tensor, then activation: FusedActivation) -> Tensor {
        var statistics: (mean: Tensor, variance: Tensor)?
        var count: Int?
        if isTraining, let reducer {
            var (sum, squares, n) = batchNormStatistics(x)
            var all = sum + squares + [Double(n)]
            do { try reducer.sumAcrossReplicas(&all) } catch {
                preconditionFailure("synchronised batch norm: all-reduce failed: \(error)")
            }
            let c = sum.count
            sum = Array(all[0..<c])
            squares = Array(all[c..<(2 * c)])
            count = Int(all[2 * c])
            statistics = batchNormMoments(sum: sum, sumOfSquares: squares, count: count!)
        }
        if isTraining { noGrad { batchesTracked.data[0] += 1 } }
        return batchNorm(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                         training: isTraining, momentum: momentum, eps: eps,
                         statistics: statistics, statisticsCount: count, synchronizedBackward: statistics == nil ? nil : reducer,
                         activation: activation)
    }
}
