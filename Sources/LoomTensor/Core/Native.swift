import COpenBLAS
import CDNNL
import Foundation

/// What Loom linked and loaded for BLAS and oneDNN (for `loom doctor`).
public enum TensorNative {
    /// OpenBLAS's chosen kernel (`openblas_get_corename()`), e.g. "Cooperlake".
    public static var blasCoreName: String { String(cString: openblas_get_corename()) }
    /// OpenBLAS's build configuration string.
    public static var blasConfig: String { String(cString: openblas_get_config()) }

    /// oneDNN's version as "major.minor.patch (hash)".
    public static var dnnlVersion: String {
        let v = dnnl_version()!.pointee
        return "\(v.major).\(v.minor).\(v.patch) (\(String(cString: v.hash)))"
    }

    /// The CPU instruction set oneDNN's JIT uses on this machine.
    public static var dnnlISA: String {
        let isa = dnnl_get_effective_cpu_isa()
        let names: [(dnnl_cpu_isa_t, String)] = [
            (dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"), (dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"),
            (dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core, "avx512_core"),
            (dnnl_cpu_isa_avx512_mic_4ops, "avx512_mic_4ops"), (dnnl_cpu_isa_avx512_mic, "avx512_mic"),
            (dnnl_cpu_isa_avx2_vnni, "avx2_vnni"), (dnnl_cpu_isa_avx2, "avx2"), (dnnl_cpu_isa_avx, "avx"),
            (dnnl_cpu_isa_sse41, "sse41"),
        ]
        return names.first { $0.0 == isa }?.1 ?? "isa 0x\(String(isa.rawValue, radix: 16))"
    }

    /// Measures single-precision GEMM speed (C = A·B, n×n) in GFLOP/s, best of `repeats`,
    /// split over `Parallel.threads` as Loom's own products are.
    public static func measureSgemm(n: Int = 2048, repeats: Int = 3) -> Double {
        let a = Tensor(repeating: 0.5, shape: [n, n]), b = Tensor(repeating: 0.25, shape: [n, n])
        let c = Tensor(uninitialized: [n, n])
        var best = Double.infinity
        for _ in 0..<(repeats + 1) {  // first run warms up the threads and caches
            let t0 = DispatchTime.now().uptimeNanoseconds
            rowMajorSgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a.data, lda: n,
                          b: b.data, ldb: n, beta: 0, c: c.data, ldc: n)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0))
        }
        return 2 * Double(n * n * n) / best
    }
}

/// Keeps OpenBLAS and oneDNN single-threaded: Loom splits GEMMs, convolutions and its own
/// loops over `Parallel.threads` itself. Their own thread pools, next to Loom's, oversubscribed
/// the cores: OpenBLAS's idle workers spin in `sched_yield` after every call (measured at
/// 1 process × 2 threads: 124–125 images/s with OpenBLAS at 2 threads, 131–133 at 1, W1), and
/// an OpenMP team started from inside one of Loom's threads doubles up. oneDNN's side is
/// `DNNL.withThreads(1)` around every primitive's creation and execution.
enum NativeThreads {
    static func keepSingleThreaded() { openblas_set_num_threads(1) }
}
