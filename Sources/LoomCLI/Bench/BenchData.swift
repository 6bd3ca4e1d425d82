import ArgumentParser
import Foundation
import LoomStorage

/// `loom bench data`: images/s the loader delivers, next to what the training step consumes.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Images/s the data loader delivers (1 rank, and as rank 0 of 2) against the training step's consumption.",
        discussion: """
            Without --fashion/--rgb, prepares Fashion-MNIST (32×32×1, if Debian's dataset-fashion-mnist is \
            installed) and a synthetic 3×32×32 dataset of 50000 images in a temporary folder first. With \
            --latents (a set from `loom encode`), measures that set only (and --fashion/--rgb when given).
            """)

    /// PyTorch's reference W1 rate on this machine kind and the margin a faster trainer gets.
    static let referenceConsumption = 67.0 * 1.2

    @Option(help: "A prepared 1-channel dataset folder (default: Fashion-MNIST prepared into a temporary folder).")
    var fashion: String?

    @Option(help: "A prepared 3×32×32 dataset folder (default: a synthetic one in a temporary folder).")
    var rgb: String?

    @Option(help: "A latent data set folder (from `loom encode`); then only the sets given are measured.")
    var latents: String?

    @Option(help: "Images per rank per step.")
    var batch = 64

    @Option(help: "Seconds measured per configuration.")
    var seconds = 2.0

    @Option(help: "Residency: memory, stream or both.")
    var residency = "both"

    @Flag(help: "Random horizontal flips on (the slower decode path).")
    var flip = false

    @Option(help: "Images/s the W1 training step consumes. Default 80 = PyTorch's reference 67 images/s × 1.2, a placeholder until W1's measured rate is plugged in.")
    var consumption = BenchData.referenceConsumption

    func validate() throws {
        try OptionError.check("--batch", batch, in: 1...65_536)
        try OptionError.check("--seconds", seconds, in: 0.001...3600)
        try OptionError.check("--consumption", consumption, in: 0.001...1e9)
        guard ["memory", "stream", "both"].contains(residency) else {
            throw OptionError(option: "--residency", value: "'\(residency)'", expected: "memory, stream or both")
        }
    }

    func run() throws {
        let residencies: [Residency]
        switch residency {
        case "memory": residencies = [.memory]
        case "stream": residencies = [.stream]
        case "both": residencies = [.memory, .stream]
        default: throw OptionError(option: "--residency", value: "'\(residency)'", expected: "memory, stream or both")
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("loom-bench-data-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        do {
            var sets: [(String, String)] = []
            if let latents { sets.append(("latents", latents)) }
            if let fashion {
                sets.append(("given 1-channel", fashion))
            } else if latents == nil {
                if FileManager.default.fileExists(atPath: DatasetConversion.fashionMNISTFolder + "/train-images-idx3-ubyte.gz") {
                    let out = scratch + "/fashion-mnist"
                    _ = try DatasetConversion.fashionMNIST(output: out, options: PrepareOptions(size: 32))
                    sets.append(("Fashion-MNIST", out))
                } else {
                    print("Fashion-MNIST not installed (Debian package dataset-fashion-mnist): skipped")
                }
            }
            if let rgb {
                sets.append(("given 3-channel", rgb))
            } else if latents == nil {
                let out = scratch + "/synthetic-rgb"
                _ = try DatasetConversion.write(output: out, sampleShape: [32, 32, 3], classNames: (0..<10).map(String.init),
                                                source: "synthetic (loom bench data)",
                                                splits: [("train", SyntheticImages(count: 50_000))], options: PrepareOptions())
                sets.append(("synthetic", out))
            }
            print(String(format: "consumption: %.0f images/s per process%@", consumption,
                         consumption == BenchData.referenceConsumption
                             ? " (placeholder: PyTorch's reference W1 rate 67 images/s × 1.2; pass --consumption with Loom's measured W1 rate)" : ""))
            print(String(format: "goal: the loader delivers at least 20× the consumption (%.0f images/s)", 20 * consumption))
            print("dataset                        residency  ranks         open s     images/s   × consumption")
            var allMet = true
            for (label, folder) in sets {
                let dataset = try ShardedDataset(folder: folder)
                let name = "\(label) \(dataset.sampleShape.map(String.init).joined(separator: "×"))"
                for r in residencies {
                    for world in [1, 2] {
                        let (open, rate) = try measure(dataset, residency: r, world: world)
                        let ratio = rate / consumption
                        allMet = allMet && ratio >= 20
                        print(name.padding(toLength: 30, withPad: " ", startingAt: 0), r == .memory ? "memory   " : "stream   ",
                              (world == 1 ? "1 rank      " : "rank 0 of 2 "),
                              String(format: "%8.3f %12.0f %12.0f×%@", open, rate, ratio, ratio >= 20 ? "" : "  (below the 20× goal)"))
                        fflush(stdout)
                    }
                }
            }
            print(allMet ? "the loader never limits training at this consumption" : "WARNING: the loader is below 20× the consumption somewhere above")
        } catch let error as StorageError {
            FileHandle.standardError.write(Data("loom bench data: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Seconds to open a loader, and the images/s its `next()` delivers with no work between calls.
    func measure(_ dataset: ShardedDataset, residency: Residency, world: Int) throws -> (Double, Double) {
        let t0 = Date()
        let loader = try DataLoader(dataset: dataset, options: LoaderOptions(batchSize: batch, rank: 0, worldSize: world,
                                                                              seed: 1, flip: flip, residency: residency))
        defer { loader.close() }
        _ = try loader.next()
        let open = Date().timeIntervalSince(t0)
        var images = 0
        let start = Date()
        repeat {
            images += try loader.next().images.shape[0]
        } while Date().timeIntervalSince(start) < seconds
        return (open, Double(images) / Date().timeIntervalSince(start))
    }
}

/// 3×32×32 images with smooth gradients and some texture (compressible like photos,
/// unlike random bytes), ten labels in turn.
struct SyntheticImages: SampleSource {
    let count: Int
    var labels: [Int]? { (0..<count).map { $0 % 10 } }

    func fill(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        let d = destination.assumingMemoryBound(to: UInt8.self)
        var k = 0
        for i in range {
            for y in 0..<32 {
                for x in 0..<32 {
                    for c in 0..<3 {
                        let texture = (x &* 7 &+ y &* 13 &+ i &* 31) & 15
                        d[k] = UInt8(truncatingIfNeeded: (x &* (c + 1) &+ y &* (3 - c)) &* 3 &+ i &* 17 &+ texture)
                        k += 1
                    }
                }
            }
        }
    }
}
