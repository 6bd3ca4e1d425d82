import ArgumentParser
import Foundation
import LoomStorage

/// `loom prepare`: converts a source data set into a sharded HDF5 dataset folder.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a data set (Fashion-MNIST, idx, PNG folder, CIFAR-10) into a sharded HDF5 dataset folder.",
        discussion: "The output folder is written beside itself under a hidden name and renamed into place when complete.",
        subcommands: [PrepareFashionMNIST.self, PrepareIDX.self, PreparePNG.self, PrepareCIFAR10.self])
}

/// Layout options every converter takes.
struct PrepareLayout: ParsableArguments {
    @Option(help: "Shards per split (default: from --per-shard).")
    var shards: Int?

    @Option(name: .customLong("per-shard"), help: "Largest number of samples in one shard.")
    var perShard = 10_000

    @Option(help: "gzip level 0-9 (0: uncompressed).")
    var compression = 4

    @Option(help: "Samples per HDF5 chunk (default: about 16 KiB of samples).")
    var chunk: Int?

    @Option(name: .customLong("val-fraction"), help: "Fraction of the training samples to move into a 'val' split.")
    var valFraction = 0.0

    @Option(help: "Seed choosing the validation samples.")
    var seed: UInt64 = 0

    @Option(help: "How images are fitted to --size: crop (center square, then resize) or pad (never upscale).")
    var fit: String = "crop"

    @Flag(help: "Replace an existing output folder.")
    var overwrite = false

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func validate() throws {
        if let shards { try OptionError.check("--shards", shards, in: 1...100_000) }
        try OptionError.check("--per-shard", perShard, in: 1...1_000_000_000)
        try OptionError.check("--compression", compression, in: 0...9)
        if let chunk { try OptionError.check("--chunk", chunk, in: 1...1_000_000_000) }
        guard valFraction.isFinite, valFraction >= 0, valFraction < 1 else {
            throw OptionError(option: "--val-fraction", value: "\(valFraction)", expected: "a number in [0, 1)")
        }
        guard FitMode(rawValue: fit) != nil else {
            throw OptionError(option: "--fit", value: "'\(fit)'", expected: "one of \(FitMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The library options, with `size` and a stderr progress printer.
    func options(size: Int?) throws -> PrepareOptions {
        guard let mode = FitMode(rawValue: fit) else {
            throw ValidationError("--fit \(fit): expected one of \(FitMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let writer = WriterOptions(shards: shards, samplesPerShard: perShard, compression: compression,
                                   chunkSamples: chunk, overwrite: overwrite)
        return PrepareOptions(writer: writer, size: size, fit: mode, valFraction: valFraction, seed: seed,
                              progress: quiet ? nil : ProgressPrinter().report)
    }
}

/// Progress lines on stderr, at most a few per second plus one at the end of each split.
final class ProgressPrinter {
    private var last = 0.0
    private let started = Date()
    /// The command the lines start with.
    private let verb: String

    init(verb: String = "prepare") { self.verb = verb }

    func report(_ split: String, _ done: Int, _ total: Int) {
        let now = Date().timeIntervalSince(started)
        guard done == total || now - last >= 0.5 else { return }
        last = now
        let percent = total > 0 ? 100 * done / total : 100
        FileHandle.standardError.write(Data(String(format: "%@ %@: %d/%d samples (%d%%), %.1f s\n",
                                                   verb, split, done, total, percent, now).utf8))
    }
}

/// Runs a conversion, printing a summary, or the error in one line and exiting 1.
func runPrepare(_ output: String, _ body: () throws -> DatasetIndex) throws {
    let start = Date()
    do {
        let index = try body()
        let shape = index.sampleShape.map(String.init).joined(separator: "×")
        let splits = index.splits.keys.sorted().map { name -> String in
            let s = index.splits[name]!
            return "\(name) \(s.count) in \(s.shards.count) shard\(s.shards.count == 1 ? "" : "s")"
        }
        let bytes = index.splits.values.flatMap(\.shards).map(\.bytes).reduce(0, +)
        print(String(format: "wrote %@: %@ images of %@ (H×W×C), %@; %.1f MB in %.1f s", output, index.kind.rawValue == "images" ? "uint8" : "float32",
                     shape, splits.joined(separator: ", "), Double(bytes) / 1e6, Date().timeIntervalSince(start)))
    } catch let error as StorageError {
        FileHandle.standardError.write(Data("loom prepare: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// `loom prepare fashion-mnist OUT`.
struct PrepareFashionMNIST: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fashion-mnist",
        abstract: "Fashion-MNIST from Debian's dataset-fashion-mnist package (train and test splits).")

    @Argument(help: "Output dataset folder.")
    var output: String

    @Option(help: "Folder holding the four idx files.")
    var source = DatasetConversion.fashionMNISTFolder

    @Option(help: "Output side length (28 keeps the original images; 32 is W1's and W2's input).")
    var size = 32

    @OptionGroup var layout: PrepareLayout

    func validate() throws { try validateSize(size) }

    func run() throws {
        let options = try layout.options(size: size)
        try runPrepare(output) { try DatasetConversion.fashionMNIST(output: output, folder: source, options: options) }
    }
}

/// `loom prepare idx --images F [--labels F] OUT`.
struct PrepareIDX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idx", abstract: "idx files (the MNIST format, gzipped or plain) with optional labels.")

    @Option(help: "Training images idx file.")
    var images: String

    @Option(help: "Training labels idx file.")
    var labels: String?

    @Option(name: .customLong("test-images"), help: "Test images idx file (a 'test' split).")
    var testImages: String?

    @Option(name: .customLong("test-labels"), help: "Test labels idx file.")
    var testLabels: String?

    @Option(help: "Output side length (default: the source's).")
    var size: Int?

    @Argument(help: "Output dataset folder.")
    var output: String

    @OptionGroup var layout: PrepareLayout

    func validate() throws { try validateSize(size) }

    func run() throws {
        let options = try layout.options(size: size)
        try runPrepare(output) {
            try DatasetConversion.idx(output: output, images: images, labels: labels, testImages: testImages,
                                        testLabels: testLabels, options: options)
        }
    }
}

/// `loom prepare png DIR OUT --size 32`.
struct PreparePNG: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "png", abstract: "A folder of PNG images; one subfolder per class gives labels.")

    @Argument(help: "Folder of PNG files or of class subfolders.")
    var folder: String

    @Argument(help: "Output dataset folder.")
    var output: String

    @Option(help: "Output side length.")
    var size = 32

    @Option(help: "Output channels: 1 (gray) or 3 (RGB); default: the first image's.")
    var channels: Int?

    @OptionGroup var layout: PrepareLayout

    func validate() throws {
        try validateSize(size)
        if let channels, ![1, 3].contains(channels) { throw OptionError(option: "--channels", value: "\(channels)", expected: "1 or 3") }
    }

    func run() throws {
        let options = try layout.options(size: size)
        try runPrepare(output) {
            try DatasetConversion.pngFolder(output: output, folder: folder, size: size, channels: channels, options: options)
        }
    }
}

/// `loom prepare cifar10 DIR OUT`.
struct PrepareCIFAR10: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cifar10", abstract: "CIFAR-10's binary batches (data_batch_*.bin, test_batch.bin).")

    @Argument(help: "Folder holding the .bin batch files.")
    var folder: String

    @Argument(help: "Output dataset folder.")
    var output: String

    @Option(help: "Output side length (default 32, the source's).")
    var size: Int?

    @OptionGroup var layout: PrepareLayout

    func validate() throws { try validateSize(size) }

    func run() throws {
        let options = try layout.options(size: size)
        try runPrepare(output) { try DatasetConversion.cifar10(output: output, folder: folder, options: options) }
    }
}

/// Output sides from 1 to 4096 pixels (a 4096² image is 16 M pixels per sample).
func validateSize(_ size: Int?) throws {
    if let size { try OptionError.check("--size", size, in: 1...4096) }
}
