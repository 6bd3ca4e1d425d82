// swift-tools-version:6.0
import Foundation
import PackageDescription

// Module direction (one way): LoomTensor ← LoomNN ← (models, diffusion, metrics) ← training ← LoomCLI.
// MPI is only imported by LoomDistributed, HDF5 only by LoomStorage.
// Vector width: Loom's kernels are written over SIMD16<Float>; without a target CPU the
// compiler emits SSE only. The build machine's flags pick the CPU family (like -march=native);
// LOOM_TARGET_CPU overrides it (e.g. "x86-64" for a portable build).
func targetCPU() -> String? {
    if let forced = ProcessInfo.processInfo.environment["LOOM_TARGET_CPU"] { return forced.isEmpty ? nil : forced }
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let flags = Set(line.split(separator: " ").map(String.init))
    if ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) {
        // Zen 4 and later (AVX-512 with BF16 on AMD): znver4 keeps SIMD16<Float> in one zmm
        // register; skylake-avx512's tuning prefers 256-bit vectors and splits every
        // SIMD16 operation in two (GroupNorm+SiLU measured 0.94 → 0.53 ms, W1 step +10 %).
        if info.contains("AuthenticAMD") && flags.contains("avx512_bf16") { return "znver4" }
        return "skylake-avx512"
    }
    if ["avx2", "fma"].allSatisfy(flags.contains) { return "haswell" }
    return nil
}
// Both CPU families named above have FMA; LOOM_FMA lets the SIMD math use fused multiply-add
// (Swift never contracts `a * b + c` on its own).
// LOOM_CPU_<TARGET> tells the binary which CPU it was built for, so it can refuse to run (one
// line, not SIGILL) on a node that lacks that CPU's instructions.
// LOOM_TARGET_FEATURES adds LLVM target features, comma-separated, through the Clang importer
// (whose target options Swift's code generation shares). E.g. `-prefer-256-bit` keeps each
// SIMD16 operation in one zmm register on Intel's AVX-512 targets, whose tuning splits it in
// two: measure a build with and without it on an Intel host (see README "Choosing the target CPU").
let targetFeatures = (ProcessInfo.processInfo.environment["LOOM_TARGET_FEATURES"] ?? "")
    .split(separator: ",").flatMap { ["-Xcc", "-Xclang", "-Xcc", "-target-feature", "-Xcc", "-Xclang", "-Xcc", String($0)] }
let cpuFlags = targetCPU().map { cpu in
    ["-target-cpu", cpu] + (["znver4", "skylake-avx512", "haswell"].contains(cpu) ? ["-DLOOM_FMA"] : [])
        + targetFeatures
        + ["-DLOOM_CPU_" + cpu.uppercased().replacingOccurrences(of: "-", with: "_")]
} ?? []
// -O, not -Ounchecked: preconditions and bounds checks stay on in release builds. Measured side
// by side (1 × 1, same minutes): W1 65.5 / 66.7 / 65.5 images/s with -O against 65.2 / 65.4 /
// 64.9 with -Ounchecked, W3 260.9 / 251.1 against 264.9 / 261.0: within the noise, under 3 %.
let native: [SwiftSetting] = [.unsafeFlags(["-O"] + cpuFlags, .when(configuration: .release))]

let package = Package(
    name: "Loom",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "loom", targets: ["LoomCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // Native libraries from Debian's packages (see README "Native libraries").
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev", "hdf5-tools"])]),
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        .target(name: "LoomTensor", dependencies: ["COpenBLAS", "CDNNL"], swiftSettings: native),
        .target(name: "LoomNN", dependencies: ["LoomTensor"], swiftSettings: native),
        .target(name: "LoomDistributed", dependencies: ["CMPI", "LoomTensor"], swiftSettings: native),
        .target(name: "LoomStorage", dependencies: ["CHDF5", "CZlib", "CPNG", "LoomTensor"], swiftSettings: native),
        .target(name: "LoomDiffusion", dependencies: ["LoomTensor"], swiftSettings: native),
        .target(name: "LoomModels", dependencies: ["LoomNN"], swiftSettings: native),
        // Sample-quality metrics on feature sets (FD, KID, precision/recall, density/coverage).
        .target(name: "LoomMetrics", dependencies: ["LoomTensor", "COpenBLAS"], swiftSettings: native),
        .target(name: "LoomTraining", dependencies: [
            "LoomTensor", "LoomNN", "LoomModels", "LoomDiffusion", "LoomDistributed", "LoomStorage", "LoomMetrics",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: native),
        // `loom train`: supervises mpirun/srun children (no MPI calls of its own).
        .target(name: "LoomCoordinator", dependencies: ["LoomTraining", "LoomStorage"], swiftSettings: native),
        .executableTarget(name: "LoomCLI", dependencies: [
            "LoomTensor", "LoomNN", "LoomDistributed", "LoomStorage", "LoomTraining", "LoomCoordinator", "LoomMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: native),

        .testTarget(name: "LoomTensorTests", dependencies: ["LoomTensor"]),
        .testTarget(name: "LoomNNTests", dependencies: ["LoomNN"]),
        .testTarget(name: "LoomDiffusionTests", dependencies: ["LoomDiffusion"], exclude: ["Fixtures"]),
        .testTarget(name: "LoomModelsTests", dependencies: ["LoomModels"]),
        .testTarget(name: "LoomMetricsTests", dependencies: ["LoomMetrics", "LoomTensor"]),
        .testTarget(name: "LoomTrainingTests", dependencies: ["LoomTraining", "LoomTensor", "LoomModels", .product(name: "Yams", package: "Yams")]),
        .testTarget(name: "LoomCLITests", dependencies: ["LoomTensor", "LoomStorage", "LoomCoordinator"]),
    ],
    swiftLanguageModes: [.v5]
)
