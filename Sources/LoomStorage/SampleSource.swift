import Foundation

/// Where `DatasetWriter` takes a split's samples from: converters decode lazily, block by block,
/// so a conversion never needs the whole decoded dataset in memory.
public protocol SampleSource {
    /// Number of samples.
    var count: Int { get }
    /// One label per sample, or nil when the source has none.
    var labels: [Int]? { get }
    /// Writes samples `range` (row-major, native elements of the dataset's type) to `destination`.
    func fill(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws
    /// The element type `fill` writes, when the source knows it (checked against the dataset's).
    var elementType: H5ElementType? { get }
}

extension SampleSource {
    /// Unknown by default: decoders of 8-bit images write uint8.
    public var elementType: H5ElementType? { nil }
}

/// Samples already in memory: `count × sampleCount` elements, row-major.
public struct MemorySamples<Element: H5Scalar>: SampleSource {
    /// All elements.
    public var values: [Element]
    /// Elements per sample.
    public var sampleCount: Int
    /// One label per sample, or nil.
    public var labels: [Int]?

    /// Samples over `values`, `sampleCount` elements each.
    public init(values: [Element], sampleCount: Int, labels: [Int]? = nil) {
        precondition(sampleCount > 0 && values.count % sampleCount == 0, "\(values.count) values in samples of \(sampleCount)")
        precondition(labels == nil || labels!.count == values.count / sampleCount, "one label per sample")
        self.values = values
        self.sampleCount = sampleCount
        self.labels = labels
    }

    /// Number of samples.
    public var count: Int { values.count / sampleCount }
    /// `Element`'s HDF5 type.
    public var elementType: H5ElementType? { Element.h5Type }

    /// Copies samples `range`.
    public func fill(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        values.withUnsafeBufferPointer { v in
            destination.copyMemory(from: v.baseAddress! + range.lowerBound * sampleCount,
                                   byteCount: range.count * sampleCount * MemoryLayout<Element>.stride)
        }
    }
}

/// The samples of `base` at `indices` (validation splits), in that order.
public struct SubsetSource: SampleSource {
    /// The full source.
    public let base: SampleSource
    /// Which of its samples, in order.
    public let indices: [Int]
    /// Bytes per sample in `base`'s element type.
    public let sampleBytes: Int

    /// The samples of `base` at `indices`; `sampleBytes` is one sample's size.
    public init(base: SampleSource, indices: [Int], sampleBytes: Int) {
        self.base = base
        self.indices = indices
        self.sampleBytes = sampleBytes
    }

    /// Number of samples.
    public var count: Int { indices.count }
    /// The labels of the chosen samples.
    public var labels: [Int]? { base.labels.map { l in indices.map { l[$0] } } }
    /// The base's element type.
    public var elementType: H5ElementType? { base.elementType }

    /// Copies the chosen samples, merging consecutive runs into one `base.fill`.
    public func fill(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        var i = range.lowerBound
        while i < range.upperBound {
            var j = i + 1
            while j < range.upperBound && indices[j] == indices[j - 1] + 1 { j += 1 }
            try base.fill(indices[i]..<(indices[i] + j - i), into: destination + (i - range.lowerBound) * sampleBytes)
            i = j
        }
    }
}

/// 8-bit images in memory, each fitted to `size × size` as it is written.
public struct ResizedSource: SampleSource {
    /// The original images, `[height, width, channels]` each.
    public let base: MemorySamples<UInt8>
    /// The original image shape `[H, W, C]`.
    public let shape: [Int]
    /// Output side length.
    public let size: Int
    /// How non-square or differently sized images are fitted.
    public let mode: FitMode

    /// `base` images of `shape` fitted to `size × size` by `mode`.
    public init(base: MemorySamples<UInt8>, shape: [Int], size: Int, mode: FitMode) {
        self.base = base
        self.shape = shape
        self.size = size
        self.mode = mode
    }

    /// Number of images.
    public var count: Int { base.count }
    /// The base labels.
    public var labels: [Int]? { base.labels }

    /// Resizes images `range` into `destination` (`size × size × C` bytes each).
    public func fill(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        let n = base.sampleCount, out = size * size * shape[2]
        let plan = ImageFit(width: shape[1], height: shape[0], channels: shape[2], size: size, mode: mode)
        let dst = destination.assumingMemoryBound(to: UInt8.self)
        base.values.withUnsafeBufferPointer { v in
            for (k, i) in range.enumerated() { plan.apply(v.baseAddress! + i * n, dst + k * out) }
        }
    }
}

/// A folder of PNG files: one subfolder per class gives labels (classes in name order);
/// PNGs directly in the folder make an unlabelled set. Files are decoded as they are written.
public struct PNGFolderSource: SampleSource {
    /// Every PNG, sorted by class then file name.
    public let files: [String]
    /// Class names (the subfolder names), empty when unlabelled.
    public let classNames: [String]
    /// One label per file, or nil.
    public let labels: [Int]?
    /// Output side length.
    public let size: Int
    /// Output channels (1 or 3).
    public let channels: Int
    /// How images are fitted to the size.
    public let mode: FitMode

    /// Scans `folder`. `channels` nil takes the first image's kind (gray or RGB).
    public init(folder: String, size: Int, channels: Int?, mode: FitMode) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StorageError.missing(path: folder, hint: "expected a folder of PNG files or of class subfolders")
        }
        guard size > 0 else { throw StorageError.badArgument(name: "--size", value: "\(size)", expected: "a positive side length") }
        func pngs(_ dir: String) throws -> [String] {
            let names: [String]
            do { names = try fm.contentsOfDirectory(atPath: dir) } catch { throw StorageError.posix(dir, "list") }
            return names.filter { $0.lowercased().hasSuffix(".png") }.sorted().map { dir + "/" + $0 }
        }
        let entries = ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).sorted()
        let classes = entries.filter { !$0.hasPrefix(".") && (try? fm.attributesOfItem(atPath: folder + "/" + $0)[.type] as? FileAttributeType) == .typeDirectory }
        var files: [String] = [], labels: [Int] = []
        if classes.isEmpty {
            files = try pngs(folder)
        } else {
            for (label, name) in classes.enumerated() {
                let inClass = try pngs(folder + "/" + name)
                files += inClass
                labels += Array(repeating: label, count: inClass.count)
            }
        }
        guard !files.isEmpty else { throw StorageError.badInput(path: folder, detail: "no .png files found (nor in its subfolders)") }
        let c = try channels ?? PNG.storedChannels(path: files[0])
        guard c == 1 || c == 3 else { throw StorageError.badArgument(name: "--channels", value: "\(c)", expected: "1 or 3") }
        self.files = files
        self.classNames = classes
        self.labels = classes.isEmpty ? nil : labels
        self.size = size
        self.channels = c
        self.mode = mode
    }

    /// Number of images.
    public var count: Int { files.count }

    /// Decodes and fits files `range`, on every core.
    public func fill(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        let out = size * size * channels
        let dst = destination.assumingMemoryBound(to: UInt8.self)
        // The lowest failing index wins, so the message does not depend on thread timing.
        final class Failure: @unchecked Sendable { var error: Error?; var index = Int.max; let lock = NSLock() }
        let failure = Failure()
        let files = self.files, size = self.size, channels = self.channels, mode = self.mode
        DispatchQueue.concurrentPerform(iterations: range.count) { k in
            do {
                let image = try PNG.read(path: files[range.lowerBound + k], channels: channels)
                let fitted = ImageResize.fit(image, size: size, mode: mode)
                fitted.pixels.withUnsafeBufferPointer { (dst + k * out).update(from: $0.baseAddress!, count: out) }
            } catch {
                failure.lock.lock()
                if k < failure.index { failure.error = error; failure.index = k }
                failure.lock.unlock()
            }
        }
        if let e = failure.error { throw e }
    }
}
