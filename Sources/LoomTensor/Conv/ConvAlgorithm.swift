/// How convolutions are computed where there is a choice.
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    /// Winograd F(4×4, 3×3) for 3×3, stride-1, padding-1 convolutions whose channel counts are
    /// multiples of 16 (oneDNN's `jit_wino_4x3`, on AVX-512), direct convolution elsewhere. It
    /// does 2.25–4× fewer multiplications; W1's layers ran 1.1× (32 channels at 32×32) to
    /// 1.5× (64 channels) faster, reorders to and from its blocked layout included (see
    /// `loom bench ops`). Results differ from direct convolution by rounding (≈ 2e-6 relative).
    case auto
    /// Direct convolution everywhere (oneDNN's brgconv/jit kernels on NHWC).
    case direct

    /// The algorithm convolutions use from now on (primitives are cached per algorithm, so
    /// switching back and forth is cheap); runs set it from `conv_algorithm` at start-up.
    public nonisolated(unsafe) static var current: ConvAlgorithm = .auto

    /// Whether `auto` can use Winograd on this CPU (oneDNN has it for AVX-512 only).
    public static var winogradAvailable: Bool { DNNL.hasWinograd }
}

/// The kernel family one pass of one convolution runs.
enum ConvKernel: Hashable {
    /// oneDNN's direct convolution on NHWC.
    case direct
    /// oneDNN's Winograd F(4×4, 3×3) on the nChw16c blocked layout, with reorders around it.
    case winograd

    /// The kernel `algorithm` picks for `pass` of `g`.
    ///
    /// Backward-weights runs per chunk of 16 images and gains from Winograd only when the
    /// output has 64 or more channels (measured on W1's shapes: 32-output layers were 3–6 %
    /// slower with it, 64-output ones 1.2–1.5× faster).
    static func choose(_ algorithm: ConvAlgorithm, _ g: ConvGeometry, _ pass: ConvPass) -> ConvKernel {
        guard algorithm == .auto, DNNL.hasWinograd, g.kh == 3, g.kw == 3, g.stride == 1, g.padding == 1,
              g.padBottom == 1, g.padRight == 1, g.srcC % 16 == 0, g.dstC % 16 == 0 else { return .direct }
        if pass == .backwardWeights && g.dstC < 64 { return .direct }
        return .winograd
    }
}
