import LoomNN
import LoomTensor

/// Shape of a DDPM U-Net (defaults: workload W1, `ddpm-unet-s`).
public struct UNetConfig: Equatable, Sendable {
    public var imageSize = 32
    public var inChannels = 1
    public var baseChannels = 32
    public var channelMultipliers = [1, 2, 2]
    public var resBlocks = 2
    public var attentionResolutions = [8]
    public var heads = 4
    public var dropout = 0.0
    /// Number of classes for conditioning; 0 = unconditional (one more embedding row is the
    /// null class for classifier-free guidance).
    public var classes = 0
    public var groups = 8

    public init() {}
}
