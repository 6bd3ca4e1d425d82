import Foundation
import LoomStorage
import LoomTensor

/// Temporary folders and deterministic fixture data for the storage tests.
enum Fixture {
    /// A fresh empty folder under the system's temporary directory.
    static func folder(_ name: String = #function) -> String {
        let clean = name.filter { $0.isLetter || $0.isNumber }
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("loom-test-\(clean)-\(UUID().uuidString.prefix(8))").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Removes a fixture folder.
    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    /// `count` pseudo-random bytes from `seed` (Philox, so the same on every machine).
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var stream = RandomStream(key: seed)
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            let (a, b, c, d) = RandomStream.block(key: stream.key, index: stream.counter)
            stream.counter += 1
            for w in [a, b, c, d] {
                for s in stride(from: 0, to: 32, by: 8) where i < count {
                    out[i] = UInt8(truncatingIfNeeded: w >> UInt32(s))
                    i += 1
                }
            }
        }
        return out
    }

    /// A small labelled idx pair (`count` images of `rows × cols`, labels 0…9) in `folder`.
    static func idx(in folder: String, count: Int, rows: Int, cols: Int, seed: UInt64 = 1, gzip: Bool = true)
        -> (images: String, labels: String, pixels: [UInt8], labelValues: [Int]) {
        let pixels = bytes(count * rows * cols, seed: seed)
        let labels = bytes(count, seed: seed + 100).map { Int($0 % 10) }
        let ext = gzip ? ".gz" : ""
        let imagesPath = folder + "/images-idx3-ubyte" + ext, labelsPath = folder + "/labels-idx1-ubyte" + ext
        try! IDX.write(path: imagesPath, array: IDXArray(dims: [count, rows, cols], bytes: pixels), gzip: gzip)
        try! IDX.write(path: labelsPath, array: IDXArray(dims: [count], bytes: labels.map(UInt8.init)), gzip: gzip)
        return (imagesPath, labelsPath, pixels, labels)
    }

    /// Writes a dataset of `count` random images of `shape` with labels `i % 10` through the
    /// library (no resizing) and returns its bytes.
    @discardableResult
    static func dataset(at output: String, count: Int, shape: [Int], shards: Int, seed: UInt64 = 7,
                        compression: Int = 1, chunk: Int? = nil) throws -> [UInt8] {
        let n = shape.reduce(1, *)
        let pixels = bytes(count * n, seed: seed)
        let source = MemorySamples(values: pixels, sampleCount: n, labels: (0..<count).map { $0 % 10 })
        _ = try DatasetConversion.write(output: output, sampleShape: shape, classNames: (0..<10).map { "c\($0)" },
                                        source: "test fixture", splits: [("train", source)],
                                        options: PrepareOptions(writer: WriterOptions(shards: shards, compression: compression,
                                                                                      chunkSamples: chunk)))
        return pixels
    }

    /// Whether `body` throws a `StorageError` whose message contains every one of `parts`.
    static func storageError(_ parts: [String], _ body: () throws -> Void) -> (Bool, String) {
        do {
            try body()
            return (false, "no error thrown")
        } catch let e as StorageError {
            let text = e.description
            return (parts.allSatisfy { text.contains($0) }, text)
        } catch {
            return (false, "not a StorageError: \(error)")
        }
    }
}
