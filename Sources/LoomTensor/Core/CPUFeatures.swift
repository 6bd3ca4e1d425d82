import Foundation

/// The instructions this binary was compiled for (`-target-cpu`, chosen by Package.swift from
/// the build machine), and whether the CPU it runs on has them. A binary built on one node
/// and run on another without them would die with SIGILL at the first such instruction.
public enum CPUFeatures {
    /// The build's target CPU, as Package.swift passed it to the compiler (nil: generic x86-64).
    public static var buildTarget: String? {
        #if LOOM_CPU_ZNVER4
        return "znver4"
        #elseif LOOM_CPU_SKYLAKE_AVX512
        return "skylake-avx512"
        #elseif LOOM_CPU_HASWELL
        return "haswell"
        #else
        return nil
        #endif
    }

    /// /proc/cpuinfo flags the compiler may use for `target` (the families of instructions
    /// LLVM enables for it that a CPU of another kind can lack).
    public static func required(for target: String?) -> [String] {
        let haswell = ["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"]
        let skylakeAVX512 = haswell + ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
        switch target {
        case "haswell": return haswell
        case "skylake-avx512": return skylakeAVX512
        case "znver4": return skylakeAVX512 + ["avx512_bf16", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
                                               "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "gfni", "vaes", "vpclmulqdq"]
        default: return []
        }
    }

    /// The flags of `required(for: target)` that `cpuinfo`'s first `flags` line lacks.
    public static func missing(for target: String?, cpuinfo: String) -> [String] {
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        let flags = Set(line.split(separator: " ").map(String.init))
        return required(for: target).filter { !flags.contains($0) }
    }

    /// The one-line refusal for a CPU that lacks `missing`, or nil when nothing is missing.
    public static func refusal(target: String?, missing: [String]) -> String? {
        guard let target, !missing.isEmpty else { return nil }
        return "loom: this binary was built for \(target) CPUs and this CPU lacks \(missing.joined(separator: ", ")); "
            + "rebuild it on this kind of node (swift build -c release), or build one binary for every node with "
            + "LOOM_TARGET_CPU=x86-64 swift build -c release (portable, slower)"
    }
}
