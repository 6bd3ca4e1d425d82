import Foundation
import LoomStorage
import LoomTensor

/// The images and masks `loom sample --init/--mask` reads: a PNG holding one image or a grid
/// as `loom sample` writes them (tiles with 2-pixel borders), or a dataset folder.
enum SampleInputs {
    /// Up to `limit` images of `shape` ([H, W, C]) in [-1, 1], with the dataset's labels.
    static func images(_ path: String, shape: [Int], limit: Int) throws -> (Tensor, [Int]?) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw SampleOptionFailure("--init \(path): no such file or folder")
        }
        if isFolder.boolValue {
            let index = try DatasetIndex.load(folder: path)
            let split = index.splits["test"] != nil ? "test" : "train"
            let data = try ShardedDataset(folder: path, split: split, expectedShape: shape, expectedKind: .images)
            defer { data.close() }
            let n = min(limit, data.count)
            var bytes = [UInt8](repeating: 0, count: n * data.sampleBytes)
            try bytes.withUnsafeMutableBytes { try data.read(0..<n, into: $0.baseAddress!) }
            return (Tensor(bytes.map { Float($0) / 127.5 - 1 }, shape: [n] + shape), data.labels.map { Array($0.prefix(n)) })
        }
        let tiles = try Self.tiles(path, shape: shape, what: "--init")
        let n = min(limit, tiles.shape[0])
        return (tiles.sliced(axis: 0, 0..<n), nil)
    }

    /// The keep-mask for `count` images of `shape`: 1 keeps the given pixel, 0 generates it.
    /// Named: `left`, `right`, `top`, `bottom` (that half kept), `center` (all but the
    /// central half-size square kept); or a PNG (white keeps) of one image or a grid like --init.
    static func mask(_ spec: String, shape: [Int], count: Int) throws -> Tensor {
        let (h, w, c) = (shape[0], shape[1], shape[2])
        func named(_ keep: (Int, Int) -> Bool) -> Tensor {
            var values = [Float](repeating: 0, count: h * w * c)
            for y in 0..<h { for x in 0..<w where keep(y, x) { for k in 0..<c { values[(y * w + x) * c + k] = 1 } } }
            return Tensor(values, shape: [1, h, w, c])
        }
        switch spec {
        case "left": return named { _, x in x < w / 2 }
        case "right": return named { _, x in x >= w / 2 }
        case "top": return named { y, _ in y < h / 2 }
        case "bottom": return named { y, _ in y >= h / 2 }
        case "center": return named { y, x in !(h / 4..<h - h / 4).contains(y) || !(w / 4..<w - w / 4).contains(x) }
        default:
            guard spec.hasSuffix(".png") || FileManager.default.fileExists(atPath: spec) else {
                throw SampleOptionFailure("--mask must be left, right, top, bottom, center or a PNG file, found '\(spec)'")
            }
            let tiles = try Self.tiles(spec, shape: shape, what: "--mask")
            let binary = Tensor(tiles.array.map { $0 > 0 ? 1 : 0 }, shape: tiles.shape)
            guard binary.shape[0] == 1 || binary.shape[0] >= count else {
                throw SampleOptionFailure("--mask \(spec) holds \(binary.shape[0]) masks for \(count) images (give one, or one per image)")
            }
            return binary.shape[0] == 1 ? binary : binary.sliced(axis: 0, 0..<count)
        }
    }

    /// A PNG of one `shape` image or a grid of them (2-pixel borders) as `[N, H, W, C]` in [-1, 1].
    static func tiles(_ path: String, shape: [Int], what: String) throws -> Tensor {
        let (h, w, c) = (shape[0], shape[1], shape[2])
        let image = try PNG.read(path: path, channels: c)
        let pad = image.width == w && image.height == h ? 0 : 2
        let cols = (image.width - pad) / (w + pad), rows = (image.height - pad) / (h + pad)
        guard cols >= 1, rows >= 1, image.width == cols * (w + pad) + pad, image.height == rows * (h + pad) + pad else {
            throw SampleOptionFailure("\(what) \(path) is \(image.width)×\(image.height): expected one \(w)×\(h) image "
                                      + "or a grid of \(w)×\(h) tiles with 2-pixel borders, as loom sample writes")
        }
        var values = [Float](repeating: 0, count: rows * cols * h * w * c)
        for i in 0..<(rows * cols) {
            let top = pad + (i / cols) * (h + pad), left = pad + (i % cols) * (w + pad)
            for y in 0..<h {
                for x in 0..<(w * c) {
                    values[((i * h + y) * w) * c + x] = Float(image.pixels[((top + y) * image.width + left) * c + x]) / 127.5 - 1
                }
            }
        }
        return Tensor(values, shape: [rows * cols, h, w, c])
    }
}

/// A `loom sample` input mistake (one line).
struct SampleOptionFailure: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}
