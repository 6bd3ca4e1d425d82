import Foundation
import LoomStorage
import LoomTensor
import LoomTraining

/// The sample sets `loom eval` reads: an HDF5 file from `loom sample --raw` (`/samples`,
/// `/labels`), a dataset folder from `loom prepare` (one split, with its labels), a folder of
/// PNG files (one image each), or one PNG grid as `loom sample` writes it.
enum EvalInputs {
    /// Images `[N, H, W, C]` in [-1, 1] of `shape`, their labels when the input has them, and a
    /// description. At most `limit` images (the first ones).
    static func images(_ path: String, shape: [Int], split: String?, limit: Int?) throws -> (images: Tensor, labels: [Int]?, description: String) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw EvaluationError.input(path: path, reason: "no such file or folder")
        }
        let cap = limit ?? Int.max
        func describe(_ s: [Int]) -> String { s.map(String.init).joined(separator: "×") }
        if isFolder.boolValue {
            if FileManager.default.fileExists(atPath: path + "/" + DatasetIndex.fileName) {
                let index = try DatasetIndex.load(folder: path)
                guard index.sampleShape == shape else {
                    throw EvaluationError.input(path: path, reason: "holds \(describe(index.sampleShape)) images (H×W×C) but the feature network and reference take \(describe(shape))")
                }
                let name = split ?? (index.splits["test"] != nil ? "test" : "train")
                guard let s = index.splits[name] else {
                    throw EvaluationError.input(path: path, reason: "has no split '\(name)' (it has \(index.splits.keys.sorted().joined(separator: ", ")))")
                }
                let data = try LabelledImages.read(folder: path, split: name, count: min(cap, s.count), shape: shape)
                return (data.images, data.labels, "\(path) \(name)[0..<\(data.images.shape[0])]")
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.lowercased().hasSuffix(".png") }.sorted()
            guard !files.isEmpty else {
                throw EvaluationError.input(path: path, reason: "is neither a dataset folder (no index.json) nor a folder of PNG files")
            }
            let chosen = Array(files.prefix(cap))
            let per = shape.reduce(1, *)
            var values = [Float](repeating: 0, count: chosen.count * per)
            for (i, file) in chosen.enumerated() {
                let image = try PNG.read(path: path + "/" + file, channels: shape[2])
                guard image.height == shape[0], image.width == shape[1] else {
                    throw EvaluationError.input(path: path + "/" + file, reason: "is \(image.width)×\(image.height) but the feature network takes \(shape[1])×\(shape[0]) images")
                }
                for j in 0..<per { values[i * per + j] = Float(image.pixels[j]) / 127.5 - 1 }
            }
            return (Tensor(values, shape: [chosen.count] + shape), nil, "\(path) (\(chosen.count) PNG files)")
        }
        if path.lowercased().hasSuffix(".png") {
            let tiles = try SampleInputs.tiles(path, shape: shape, what: "SAMPLES")
            let n = min(cap, tiles.shape[0])
            return (tiles.sliced(axis: 0, 0..<n), nil, "\(path) (a grid of \(tiles.shape[0]) images)")
        }
        let file = try H5File.open(path)
        defer { file.close() }
        guard file.root.contains("samples") else {
            throw EvaluationError.input(path: path, reason: "has no /samples dataset (write one with `loom sample CKPT --raw OUT.h5`)")
        }
        let d = try file.root.openDataset("samples")
        defer { d.close() }
        guard d.shape.count == 4, Array(d.shape.dropFirst()) == shape else {
            throw EvaluationError.input(path: path, reason: "/samples is \(d.shape.count == 4 ? describe(Array(d.shape.dropFirst())) + " images (H×W×C)" : "of shape \(d.shape)") but the feature network and reference take \(describe(shape))")
        }
        guard d.type == .float32 else { throw EvaluationError.input(path: path, reason: "/samples is \(d.type.rawValue), expected float32 in [-1, 1]") }
        let all: [Float] = try d.read()
        let n = min(cap, d.shape[0]), per = shape.reduce(1, *)
        let images = Tensor(Array(all.prefix(n * per)), shape: [n] + shape)
        guard images.array.allSatisfy(\.isFinite) else { throw EvaluationError.input(path: path, reason: "/samples holds NaN or infinite values") }
        var labels: [Int]?
        if file.root.contains("labels") {
            let l: [Int64] = try file.root.read("labels")
            guard l.count == d.shape[0] else { throw EvaluationError.input(path: path, reason: "/labels has \(l.count) entries for \(d.shape[0]) samples") }
            labels = l.prefix(n).map { Int($0) }
        }
        return (images, labels, "\(path) (\(n) samples)")
    }
}
