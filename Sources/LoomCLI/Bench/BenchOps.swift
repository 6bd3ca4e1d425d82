import ArgumentParser
import Foundation
import LoomTensor

extension ConvAlgorithm: ExpressibleByArgument {}

/// `loom bench ops`: every W1 convolution (forward, backward-data, backward-weights) next
/// to the sgemm peak, and the fused GroupNorm+SiLU, at one thread unless told otherwise.
struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops", abstract: "W1 convolution GFLOP/s against sgemm's, and GroupNorm+SiLU time.")

    @Option(help: "Timed repetitions per measurement (after warm-up).")
    var repeats = 5

    @Option(help: "Threads (BLAS, oneDNN and Loom's loops).")
    var threads = 1

    @Option(help: "Convolution algorithm: auto (Winograd where it applies, timed against direct alternately) or direct.")
    var convAlgorithm: ConvAlgorithm = .auto

    func validate() throws {
        try OptionError.check("--repeats", repeats, in: 1...10_000)
        try OptionError.check("--threads", threads, in: 1...256)
    }

    func run() throws {
        Parallel.setThreads(threads)
        print("threads: \(threads), OpenBLAS core \(TensorNative.blasCoreName), oneDNN ISA \(TensorNative.dnnlISA)")
        let report = ConvBenchmark.measure(batch: 64, repeats: repeats, algorithm: convAlgorithm)
        print(report)
        let norm = NormBenchmark.groupNormSiLU(repeats: max(repeats, 20))
        print(String(format: "GroupNorm(8 groups)+SiLU over [64, 16, 16, 64] (PyTorch's 64×64×16×16): forward %.3f ms (goal ≤ 0.4), backward %.3f ms (goal ≤ 0.6)",
                     norm.forwardMs, norm.backwardMs))
    }
}
