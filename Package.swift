// swift-tools-version:6.0
import PackageDescription

// Module direction (one way): LoomTensor ← LoomNN ← (models, diffusion) ← training ← LoomCLI.
// MPI is only imported by LoomDistributed, HDF5 only by LoomStorage.
let native: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

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
        .target(name: "LoomTraining", dependencies: [
            "LoomTensor", "LoomNN", "LoomModels", "LoomDiffusion", "LoomDistributed", "LoomStorage",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: native),
        .executableTarget(name: "LoomCLI", dependencies: [
            "LoomTensor", "LoomNN", "LoomDistributed", "LoomStorage", "LoomTraining",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: native),

        .testTarget(name: "LoomTensorTests", dependencies: ["LoomTensor"]),
        .testTarget(name: "LoomNNTests", dependencies: ["LoomNN"]),
        .testTarget(name: "LoomDiffusionTests", dependencies: ["LoomDiffusion"], exclude: ["Fixtures"]),
        .testTarget(name: "LoomTrainingTests", dependencies: ["LoomTraining"]),
        .testTarget(name: "LoomCLITests", dependencies: ["LoomTensor"]),
    ],
    swiftLanguageModes: [.v5]
)
