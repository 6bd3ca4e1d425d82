import Foundation

/// CIFAR-10's binary batches (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`):
/// records of one label byte and 3×32×32 bytes in planar (CHW) order.
public enum CIFAR10 {
    /// Bytes per record: label plus 3072 pixels.
    public static let recordBytes = 1 + 3 * 32 * 32
    /// The ten class names, in label order (also in `batches.meta.txt`).
    public static let classNames = ["airplane", "automobile", "bird", "cat", "deer",
                                    "dog", "frog", "horse", "ship", "truck"]

    /// The training batch files in `folder`, sorted (`data_batch_*.bin`).
    public static func trainFiles(in folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasPrefix("data_batch_") && $0.hasSuffix(".bin") }
            .sorted { a, b in
                // data_batch_10 after data_batch_9 if anyone ever splits further.
                a.count != b.count ? a.count < b.count : a < b
            }
            .map { folder + "/" + $0 }
    }

    /// Class names from `batches.meta.txt` in `folder` when it lists ten, else the standard ones.
    public static func classNames(in folder: String) -> [String] {
        guard let text = try? String(contentsOfFile: folder + "/batches.meta.txt", encoding: .utf8) else { return classNames }
        let names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return names.count == 10 ? names : classNames
    }

    /// Reads batch files into 32×32×3 HWC images with labels.
    public static func read(paths: [String]) throws -> MemorySamples<UInt8> {
        var pixels: [UInt8] = [], labels: [Int] = []
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw StorageError.missing(path: path, hint: "a CIFAR-10 binary batch file")
            }
            guard data.count > 0, data.count % recordBytes == 0 else {
                throw StorageError.badInput(path: path, detail: "size \(data.count) bytes is not a multiple of \(recordBytes) "
                                            + "(a label byte + 3×32×32 pixels per record): truncated or not a CIFAR-10 binary batch")
            }
            let n = data.count / recordBytes
            let base = pixels.count
            pixels += [UInt8](repeating: 0, count: n * 3072)
            try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                let src = raw.bindMemory(to: UInt8.self)
                try pixels.withUnsafeMutableBufferPointer { dst in
                    for r in 0..<n {
                        let record = r * recordBytes
                        let label = Int(src[record])
                        guard label < 10 else {
                            throw StorageError.badInput(path: path, detail: "record \(r) has label \(label), expected 0…9")
                        }
                        labels.append(label)
                        // Planar R, G, B planes → interleaved pixels.
                        for p in 0..<1024 {
                            for c in 0..<3 { dst[base + r * 3072 + p * 3 + c] = src[record + 1 + c * 1024 + p] }
                        }
                    }
                }
            }
        }
        return MemorySamples(values: pixels, sampleCount: 3072, labels: labels)
    }
}
