import Foundation

/// Which OpenBLAS kernel this CPU deserves, and whether `OPENBLAS_CORETYPE` forces a weaker one.
///
/// OpenBLAS reads `OPENBLAS_CORETYPE` once, when the library loads (before `main`), so a weak
/// setting can only be undone by starting the process again with a corrected environment.
public enum BLASKernel {
    /// Strength of the kernel families Loom cares about (x86-64 DYNAMIC_ARCH names).
    static func level(_ name: String) -> Int? {
        switch name.lowercased() {
        case "sapphirerapids": return 4
        case "cooperlake": return 3
        case "skylakex": return 2
        case "haswell", "zen": return 1
        case "prescott", "core2", "penryn", "dunnington", "nehalem", "opteron", "opteron_sse3",
             "barcelona", "bobcat", "atom", "nano", "bulldozer", "piledriver", "steamroller",
             "excavator", "sandybridge", "katmai", "coppermine", "northwood", "banias":
            return 0
        default: return nil
        }
    }

    /// The strongest kernel this CPU runs, from the flags in /proc/cpuinfo (nil if unknown).
    public static func strongestForThisCPU(cpuinfo: String? = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) -> String? {
        guard let cpuinfo, let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " ").map(String.init))
        let avx512 = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains)
        if avx512 && flags.contains("avx512_bf16") { return "Cooperlake" }
        if avx512 { return "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        return nil
    }

    /// The kernel to switch to when `requested` (the OPENBLAS_CORETYPE value) is weaker than
    /// what the CPU supports; nil when it is fine or unknown.
    public static func upgrade(requested: String?, strongest: String?) -> String? {
        guard let requested, !requested.isEmpty, let strongest,
              let have = level(requested), let best = level(strongest), have < best else { return nil }
        return strongest
    }

    /// Why the running kernel is weaker than the CPU allows, and the kernel to use instead.
    public struct Decision: Equatable, Sendable {
        /// The kernel to run.
        public var kernel: String
        /// One line for the user: what was weak and why.
        public var reason: String
    }

    /// The start-up decision: upgrade when `OPENBLAS_CORETYPE` (`variable`) names a weaker kernel
    /// than the CPU's flags allow, or, with the variable unset, when the kernel OpenBLAS picked
    /// by itself (`detected`, e.g. Prescott on a CPU model 0.3.21 does not know) is weaker.
    public static func decide(variable: String?, detected: String?, strongest: String?) -> Decision? {
        if let variable, !variable.isEmpty {
            return upgrade(requested: variable, strongest: strongest).map {
                Decision(kernel: $0, reason: "OPENBLAS_CORETYPE=\(variable) forces a weaker BLAS kernel than this CPU runs")
            }
        }
        return upgrade(requested: detected, strongest: strongest).map {
            Decision(kernel: $0, reason: "OpenBLAS does not recognise this CPU and picked its \(detected!) kernel")
        }
    }
}
