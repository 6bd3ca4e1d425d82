import Foundation
import LoomTensor

/// Options shared by every `loom prepare` converter.
public struct PrepareOptions {
    /// Shard, chunk and compression layout.
    public var writer: WriterOptions
    /// Output side length; nil keeps the source's size (PNG folders always need one).
    public var size: Int?
    /// How images are fitted to `size`.
    public var fit: FitMode
    /// Fraction of the training samples moved to a `val` split (0 for none).
    public var valFraction: Double
    /// Seed choosing the validation samples.
    public var seed: UInt64
    /// Called as samples are written: (split, done, total).
    public var progress: ((String, Int, Int) -> Void)?

    /// Options with the given layout; no resizing, no validation split.
    public init(writer: WriterOptions = WriterOptions(), size: Int? = nil, fit: FitMode = .crop, valFraction: Double = 0,
                seed: UInt64 = 0, progress: ((String, Int, Int) -> Void)? = nil) {
        self.writer = writer
        self.size = size
        self.fit = fit
        self.valFraction = valFraction
        self.seed = seed
        self.progress = progress
    }
}

/// Converters from the source formats to a sharded dataset folder.
public enum DatasetConversion {
    /// Where Debian's `dataset-fashion-mnist` package installs the files.
    public static let fashionMNISTFolder = "/usr/share/datasets/fashion-mnist"
    /// Fashion-MNIST's class names by label.
    public static let fashionMNISTClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// Fashion-MNIST from `folder` (default: Debian's package): `train` (60000) and `test` (10000).
    public static func fashionMNIST(output: String, folder: String = fashionMNISTFolder,
                                    options: PrepareOptions) throws -> DatasetIndex {
        let files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        let paths = try files.map { name -> String in
            for candidate in [folder + "/" + name + ".gz", folder + "/" + name] where FileManager.default.fileExists(atPath: candidate) {
                return candidate
            }
            throw StorageError.missing(path: folder + "/" + name + ".gz",
                                       hint: "install Debian's package dataset-fashion-mnist: apt-get install dataset-fashion-mnist")
        }
        return try idx(output: output, images: paths[0], labels: paths[1], testImages: paths[2], testLabels: paths[3],
                       classNames: fashionMNISTClasses, source: "Fashion-MNIST (Debian package dataset-fashion-mnist, \(folder))",
                       options: options)
    }

    /// idx files (MNIST format, gzipped or plain): a `train` split, with labels when given,
    /// and a `test` split when test files are given. Labels without names get "0", "1", ….
    public static func idx(output: String, images: String, labels: String?, testImages: String? = nil, testLabels: String? = nil,
                           classNames: [String]? = nil, source: String? = nil, options: PrepareOptions) throws -> DatasetIndex {
        func load(_ imagesPath: String, _ labelsPath: String?) throws -> (MemorySamples<UInt8>, [Int]) {
            let x = try IDX.read(path: imagesPath)
            guard x.dims.count == 3 || x.dims.count == 4, x.dims.allSatisfy({ $0 > 0 }) else {
                throw StorageError.badInput(path: imagesPath, detail: "idx dimensions \(x.dims), expected [N, rows, columns] or [N, rows, columns, channels]")
            }
            let shape = [x.dims[1], x.dims[2], x.dims.count == 4 ? x.dims[3] : 1]
            var y: [Int]?
            if let labelsPath {
                let l = try IDX.read(path: labelsPath)
                guard l.dims == [x.dims[0]] else {
                    throw StorageError.schema(path: labelsPath, key: "idx dimensions", expected: "[\(x.dims[0])] (one label per image of \(imagesPath))",
                                              found: "\(l.dims)")
                }
                y = l.bytes.map(Int.init)
            }
            return (MemorySamples(values: x.bytes, sampleCount: shape.reduce(1, *), labels: y), shape)
        }
        let (train, shape) = try load(images, labels)
        var test: MemorySamples<UInt8>?
        if let testImages {
            let (t, testShape) = try load(testImages, testLabels)
            guard testShape == shape else {
                throw StorageError.schema(path: testImages, key: "image shape", expected: "\(shape) (as the training images)", found: "\(testShape)")
            }
            guard (t.labels == nil) == (train.labels == nil) else {
                throw StorageError.badArgument(name: "test labels", value: testLabels ?? "none", expected: "labels for both splits or neither")
            }
            test = t
        }
        let maxLabel = ((train.labels ?? []) + (test?.labels ?? [])).max()
        let names = classNames ?? maxLabel.map { m in (0...m).map(String.init) } ?? []
        if let m = maxLabel, m >= names.count {
            throw StorageError.badInput(path: labels ?? images, detail: "label \(m) but only \(names.count) class names")
        }
        func fitted(_ s: MemorySamples<UInt8>) -> SampleSource {
            guard let size = options.size, size != shape[0] || size != shape[1] else { return s }
            return ResizedSource(base: s, shape: shape, size: size, mode: options.fit)
        }
        let outShape = options.size.map { [$0, $0, shape[2]] } ?? shape
        var splits: [(String, SampleSource)] = [("train", fitted(train))]
        if let test { splits.append(("test", fitted(test))) }
        return try write(output: output, sampleShape: outShape, classNames: names,
                         source: source ?? "idx files \(images)" + (labels.map { ", \($0)" } ?? ""), splits: splits, options: options)
    }

    /// A folder of PNGs (one subfolder per class gives labels), fitted to `size × size`.
    public static func pngFolder(output: String, folder: String, size: Int, channels: Int? = nil,
                                 options: PrepareOptions) throws -> DatasetIndex {
        let source = try PNGFolderSource(folder: folder, size: size, channels: channels, mode: options.fit)
        return try write(output: output, sampleShape: [size, size, source.channels], classNames: source.classNames,
                         source: "PNG folder \(folder)", splits: [("train", source)], options: options)
    }

    /// CIFAR-10 binary batches in `folder`: `data_batch_*.bin` as `train`, `test_batch.bin`
    /// (when present) as `test`.
    public static func cifar10(output: String, folder: String, options: PrepareOptions) throws -> DatasetIndex {
        let trainFiles = CIFAR10.trainFiles(in: folder)
        guard !trainFiles.isEmpty else {
            throw StorageError.missing(path: folder + "/data_batch_1.bin", hint: "CIFAR-10's binary version (cifar-10-binary.tar.gz) unpacked")
        }
        let shape = [32, 32, 3]
        func fitted(_ s: MemorySamples<UInt8>) -> SampleSource {
            guard let size = options.size, size != 32 else { return s }
            return ResizedSource(base: s, shape: shape, size: size, mode: options.fit)
        }
        var splits: [(String, SampleSource)] = [("train", fitted(try CIFAR10.read(paths: trainFiles)))]
        let testPath = folder + "/test_batch.bin"
        if FileManager.default.fileExists(atPath: testPath) { splits.append(("test", fitted(try CIFAR10.read(paths: [testPath])))) }
        let side = options.size ?? 32
        return try write(output: output, sampleShape: [side, side, 3], classNames: CIFAR10.classNames(in: folder),
                         source: "CIFAR-10 binary batches in \(folder)", splits: splits, options: options)
    }

    /// The training indices moved to the validation split: a seeded random choice, sorted.
    public static func validationIndices(count: Int, fraction: Double, seed: UInt64) -> [Int] {
        let k = Int((Double(count) * fraction).rounded())
        guard k > 0 else { return [] }
        var stream = RandomStream(seed: seed, purpose: .data)
        return stream.permutation(count).prefix(k).sorted()
    }

    /// Writes `splits` (the first is the training split that `valFraction` divides).
    public static func write(output: String, kind: DatasetKind = .images, sampleShape: [Int], classNames: [String],
                             source: String, splits: [(String, SampleSource)], options: PrepareOptions) throws -> DatasetIndex {
        guard (0..<1).contains(options.valFraction) else {
            throw StorageError.badArgument(name: "--val-fraction", value: "\(options.valFraction)", expected: "a fraction in [0, 1)")
        }
        if let size = options.size, size <= 0 {
            throw StorageError.badArgument(name: "--size", value: "\(size)", expected: "a positive side length")
        }
        let writer = try DatasetWriter(output: output, kind: kind, sampleShape: sampleShape, classNames: classNames,
                                       source: source, options: options.writer)
        writer.progress = options.progress
        let sampleBytes = writer.sampleBytes
        for (i, (name, samples)) in splits.enumerated() {
            let val = i == 0 ? validationIndices(count: samples.count, fraction: options.valFraction, seed: options.seed) : []
            if val.isEmpty {
                try writer.addSplit(name, from: samples)
                continue
            }
            var chosen = [Bool](repeating: false, count: samples.count)
            for v in val { chosen[v] = true }
            let rest = (0..<samples.count).filter { !chosen[$0] }
            try writer.addSplit(name, from: SubsetSource(base: samples, indices: rest, sampleBytes: sampleBytes))
            try writer.addSplit("val", from: SubsetSource(base: samples, indices: val, sampleBytes: sampleBytes))
        }
        return try writer.commit()
    }
}
