import CPNG
import Foundation
import LoomTensor

/// An 8-bit image in memory, rows top to bottom, channels interleaved (HWC).
public struct Image8: Equatable, Sendable {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// Channels per pixel (1 gray, 3 RGB; 2 and 4 add alpha).
    public var channels: Int
    /// `height × width × channels` bytes.
    public var pixels: [UInt8]

    /// An image over `pixels` (which must hold `height × width × channels` bytes).
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "\(pixels.count) bytes for \(height)×\(width)×\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

/// PNG files through libpng's simplified API, which handles every bit depth and colour type
/// (and reports errors by return value: the classic API's longjmp cannot cross Swift frames).
public enum PNG {
    static func format(channels: Int) -> UInt32? {
        switch channels {
        case 1: return UInt32(PNG_FORMAT_GRAY)
        case 2: return UInt32(PNG_FORMAT_GA)
        case 3: return UInt32(PNG_FORMAT_RGB)
        case 4: return UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
        default: return nil
        }
    }

    static func message(_ image: UnsafeMutablePointer<png_image>) -> String {
        withUnsafeBytes(of: &image.pointee.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Runs `body` with a heap-allocated `png_image`: libpng keeps the struct's address as its
    /// error context between calls, so the struct must not move (a Swift local may).
    static func withImage<R>(_ body: (UnsafeMutablePointer<png_image>) throws -> R) rethrows -> R {
        let image = UnsafeMutablePointer<png_image>.allocate(capacity: 1)
        image.initialize(to: png_image())
        image.pointee.version = UInt32(PNG_IMAGE_VERSION)
        defer {
            png_image_free(image)
            image.deallocate()
        }
        return try body(image)
    }

    /// Channels of a PNG file as stored (1 gray, 3 colour; alpha not counted), read from its header.
    public static func storedChannels(path: String) throws -> Int {
        try withImage { image in
            try begin(path, image)
            return image.pointee.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1
        }
    }

    static func begin(_ path: String, _ image: UnsafeMutablePointer<png_image>) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw StorageError.missing(path: path, hint: "") }
        if png_image_begin_read_from_file(image, path) == 0 {
            throw StorageError.badInput(path: path, detail: "not a readable PNG: \(message(image))")
        }
    }

    /// Reads any 8- or 16-bit gray, RGB, RGBA or palette PNG as 8-bit gray (`channels` 1) or
    /// RGB (3); nil keeps the file's kind. Alpha is composited onto black.
    public static func read(path: String, channels: Int? = nil) throws -> Image8 {
        try withImage { image in
            try begin(path, image)
            let wanted = channels ?? (image.pointee.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1)
            guard wanted == 1 || wanted == 3 else {
                throw StorageError.badArgument(name: "channels", value: "\(wanted)", expected: "1 (gray) or 3 (RGB)")
            }
            image.pointee.format = format(channels: wanted)!
            let width = Int(image.pointee.width), height = Int(image.pointee.height)
            // Zeroed: the simplified API composites alpha onto what the buffer holds.
            var pixels = [UInt8](repeating: 0, count: width * height * wanted)
            let ok = pixels.withUnsafeMutableBytes { png_image_finish_read(image, nil, $0.baseAddress, 0, nil) }
            if ok == 0 { throw StorageError.badInput(path: path, detail: "corrupt PNG: \(message(image))") }
            return Image8(width: width, height: height, channels: wanted, pixels: pixels)
        }
    }

    /// Writes 8-bit pixels (HWC, `channels` 1 gray, 2 gray+alpha, 3 RGB or 4 RGBA).
    public static func write(path: String, pixels: [UInt8], width: Int, height: Int, channels: Int) throws {
        guard let f = format(channels: channels) else {
            throw StorageError.badArgument(name: "channels", value: "\(channels)", expected: "1, 2, 3 or 4")
        }
        guard width > 0, height > 0, pixels.count == width * height * channels else {
            throw StorageError.badArgument(name: "pixels for \(path)", value: "\(pixels.count) bytes",
                                           expected: "\(height)×\(width)×\(channels) = \(width * height * channels), not empty")
        }
        try withImage { image in
            image.pointee.width = UInt32(width)
            image.pointee.height = UInt32(height)
            image.pointee.format = f
            let ok = pixels.withUnsafeBytes { png_image_write_to_file(image, path, 0, $0.baseAddress, 0, nil) }
            if ok == 0 { throw StorageError.io(path: path, operation: "write PNG", reason: message(image)) }
        }
    }

    /// The PNG file bytes of an 8-bit image (in memory; TensorBoard's image summaries).
    public static func encode(image i: Image8) throws -> [UInt8] {
        guard let f = format(channels: i.channels), i.width > 0, i.height > 0, i.pixels.count == i.width * i.height * i.channels else {
            throw StorageError.badArgument(name: "image", value: "\(i.width)×\(i.height)×\(i.channels)", expected: "a non-empty 1-4 channel image")
        }
        return try withImage { image in
            image.pointee.width = UInt32(i.width)
            image.pointee.height = UInt32(i.height)
            image.pointee.format = f
            var size = 0
            // First call sizes the output, the second writes it.
            var ok = i.pixels.withUnsafeBytes { png_image_write_to_memory(image, nil, &size, 0, $0.baseAddress, 0, nil) }
            guard ok != 0, size > 0 else { throw StorageError.io(path: "(memory)", operation: "encode PNG", reason: message(image)) }
            var out = [UInt8](repeating: 0, count: size)
            ok = out.withUnsafeMutableBytes { o in i.pixels.withUnsafeBytes { png_image_write_to_memory(image, o.baseAddress, &size, 0, $0.baseAddress, 0, nil) } }
            guard ok != 0 else { throw StorageError.io(path: "(memory)", operation: "encode PNG", reason: message(image)) }
            return Array(out.prefix(size))
        }
    }

    /// Writes an 8-bit image.
    public static func write(path: String, image: Image8) throws {
        try write(path: path, pixels: image.pixels, width: image.width, height: image.height, channels: image.channels)
    }

    /// Writes a palette (colour-mapped) PNG: `indices` (one byte per pixel) into `palette`
    /// (RGB triples, at most 256 entries).
    public static func writePalette(path: String, indices: [UInt8], palette: [UInt8], width: Int, height: Int) throws {
        let entries = palette.count / 3
        guard palette.count % 3 == 0, (1...256).contains(entries), indices.count == width * height,
              indices.allSatisfy({ Int($0) < entries }) else {
            throw StorageError.badArgument(name: "palette for \(path)", value: "\(palette.count) bytes, \(indices.count) indices",
                                           expected: "1…256 RGB entries and \(width * height) indices below the entry count")
        }
        try withImage { image in
            image.pointee.width = UInt32(width)
            image.pointee.height = UInt32(height)
            image.pointee.format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_COLORMAP)
            image.pointee.colormap_entries = UInt32(entries)
            let ok = indices.withUnsafeBytes { i in
                palette.withUnsafeBytes { p in png_image_write_to_file(image, path, 0, i.baseAddress, 0, p.baseAddress) }
            }
            if ok == 0 { throw StorageError.io(path: path, operation: "write PNG", reason: message(image)) }
        }
    }

    /// Tiles `images` (`[N, H, W, C]`, C 1 or 3, values in [-1, 1]) into one image of
    /// `columns` columns (default: a near-square grid) with `padding` black pixels between.
    public static func grid(images: Tensor, columns: Int? = nil, padding: Int = 2) throws -> Image8 {
        guard images.rank == 4, images.shape[3] == 1 || images.shape[3] == 3, images.shape[0] > 0 else {
            throw StorageError.badArgument(name: "grid images", value: "shape \(images.shape)",
                                           expected: "[N, H, W, C] with N ≥ 1 and C 1 or 3")
        }
        let n = images.shape[0], h = images.shape[1], w = images.shape[2], c = images.shape[3]
        let cols = max(1, min(n, columns ?? Int(Double(n).squareRoot().rounded(.up))))
        let rows = (n + cols - 1) / cols
        let width = cols * w + (cols + 1) * padding, height = rows * h + (rows + 1) * padding
        var pixels = [UInt8](repeating: 0, count: width * height * c)
        let src = images.data
        for i in 0..<n {
            let top = padding + (i / cols) * (h + padding), left = padding + (i % cols) * (w + padding)
            for y in 0..<h {
                let s = src + ((i * h + y) * w) * c
                let d = ((top + y) * width + left) * c
                for x in 0..<(w * c) {
                    let v = (min(max(s[x], -1), 1) + 1) * 127.5
                    pixels[d + x] = UInt8(v.rounded())
                }
            }
        }
        return Image8(width: width, height: height, channels: c, pixels: pixels)
    }

    /// Writes `images` (`[N, H, W, C]` in [-1, 1]) as one tiled PNG (sample grids).
    public static func writeGrid(path: String, images: Tensor, columns: Int? = nil, padding: Int = 2) throws {
        try write(path: path, image: grid(images: images, columns: columns, padding: padding))
    }
}
