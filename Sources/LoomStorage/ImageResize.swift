import Foundation

/// How an image of any size becomes `size × size`.
public enum FitMode: String, Sendable, CaseIterable, Codable {
    /// Center-crop the largest square, then resample it to the size.
    case crop
    /// Never upscale: center on a black canvas (scaling down first when larger than the size).
    case pad
}

/// Separable resampling of 8-bit HWC images with a triangle (bilinear) filter widened by the
/// scale factor when shrinking: PIL's and torchvision's antialiased bilinear resize.
/// Built once per input geometry and reused for every image of that size.
public struct Resampler {
    /// Input width and height.
    public let inWidth: Int, inHeight: Int
    /// Output width and height.
    public let outWidth: Int, outHeight: Int
    /// Channels per pixel.
    public let channels: Int
    // Flattened taps per output column / row: first source index, tap count, offset into weights.
    private let xFirst: [Int], xCount: [Int], xOffset: [Int], xWeights: [Float]
    private let yFirst: [Int], yCount: [Int], yOffset: [Int], yWeights: [Float]

    /// Taps mapping source pixels `start ..< start + length` onto `out` pixels.
    static func taps(start: Int, length: Int, out: Int) -> (first: [Int], count: [Int], offset: [Int], weights: [Float]) {
        var first: [Int] = [], count: [Int] = [], offset: [Int] = [], weights: [Float] = []
        let scale = Double(length) / Double(out)
        let support = max(scale, 1)
        for i in 0..<out {
            let center = Double(start) + (Double(i) + 0.5) * scale
            let lo = max(start, Int((center - support).rounded(.down)))
            let hi = min(start + length, Int((center + support).rounded(.up)))
            let w = (lo..<hi).map { max(0, 1 - abs(Double($0) + 0.5 - center) / support) }
            let total = w.reduce(0, +)
            first.append(lo)
            count.append(w.count)
            offset.append(weights.count)
            weights += w.map { Float($0 / total) }
        }
        return (first, count, offset, weights)
    }

    /// A resampler from the window (`x0`, `y0`, `cropWidth`, `cropHeight`) of `inWidth × inHeight`
    /// images to `outWidth × outHeight`.
    public init(inWidth: Int, inHeight: Int, channels: Int, x0: Int = 0, y0: Int = 0, cropWidth: Int? = nil,
                cropHeight: Int? = nil, outWidth: Int, outHeight: Int) {
        self.inWidth = inWidth
        self.inHeight = inHeight
        self.outWidth = outWidth
        self.outHeight = outHeight
        self.channels = channels
        (xFirst, xCount, xOffset, xWeights) = Resampler.taps(start: x0, length: cropWidth ?? inWidth, out: outWidth)
        (yFirst, yCount, yOffset, yWeights) = Resampler.taps(start: y0, length: cropHeight ?? inHeight, out: outHeight)
    }

    /// Resamples one image from `src` (`inHeight × inWidth × channels`) to `dst`
    /// (`outHeight × outWidth × channels`, rows `dstStride` bytes apart).
    public func apply(_ src: UnsafePointer<UInt8>, _ dst: UnsafeMutablePointer<UInt8>, dstStride: Int? = nil) {
        let c = channels, rowFloats = outWidth * c
        let stride = dstStride ?? rowFloats
        let yLo = yFirst.first ?? 0, yHi = zip(yFirst, yCount).map { $0 + $1 }.max() ?? 0
        // Horizontal pass over the source rows the vertical pass reads.
        var rows = [Float](repeating: 0, count: max(yHi - yLo, 0) * rowFloats)
        rows.withUnsafeMutableBufferPointer { r in
            for y in yLo..<yHi {
                let s = src + y * inWidth * c, d = r.baseAddress! + (y - yLo) * rowFloats
                for x in 0..<outWidth {
                    let f = xFirst[x], n = xCount[x], o = xOffset[x]
                    for k in 0..<c {
                        var acc: Float = 0
                        for j in 0..<n { acc += xWeights[o + j] * Float(s[(f + j) * c + k]) }
                        d[x * c + k] = acc
                    }
                }
            }
            for y in 0..<outHeight {
                let f = yFirst[y] - yLo, n = yCount[y], o = yOffset[y]
                let d = dst + y * stride
                for x in 0..<rowFloats {
                    var acc: Float = 0
                    for j in 0..<n { acc += yWeights[o + j] * r[(f + j) * rowFloats + x] }
                    d[x] = UInt8(min(max(acc.rounded(), 0), 255))
                }
            }
        }
    }
}

/// Fitting images of one input geometry to `size × size` (a plan reused across images).
public struct ImageFit {
    /// Output side length.
    public let size: Int
    /// Channels per pixel.
    public let channels: Int
    private let resampler: Resampler?
    private let left: Int, top: Int, innerWidth: Int, innerHeight: Int

    /// A plan for `width × height × channels` images, fitted by `mode`.
    public init(width: Int, height: Int, channels: Int, size: Int, mode: FitMode) {
        self.size = size
        self.channels = channels
        switch mode {
        case .crop:
            let side = min(width, height)
            resampler = width == size && height == size ? nil
                : Resampler(inWidth: width, inHeight: height, channels: channels, x0: (width - side) / 2, y0: (height - side) / 2,
                            cropWidth: side, cropHeight: side, outWidth: size, outHeight: size)
            (left, top, innerWidth, innerHeight) = (0, 0, size, size)
        case .pad:
            var w = width, h = height
            if width > size || height > size {
                let scale = Double(size) / Double(max(width, height))
                w = max(1, Int((Double(width) * scale).rounded()))
                h = max(1, Int((Double(height) * scale).rounded()))
                resampler = Resampler(inWidth: width, inHeight: height, channels: channels, outWidth: w, outHeight: h)
            } else {
                resampler = nil
            }
            (left, top, innerWidth, innerHeight) = ((size - w) / 2, (size - h) / 2, w, h)
        }
    }

    /// Writes the fitted image (`size × size × channels` bytes) to `dst`.
    public func apply(_ src: UnsafePointer<UInt8>, _ dst: UnsafeMutablePointer<UInt8>) {
        let c = channels
        let inner = dst + (top * size + left) * c
        if innerWidth < size || innerHeight < size { dst.update(repeating: 0, count: size * size * c) }
        if let resampler {
            resampler.apply(src, inner, dstStride: size * c)
        } else {
            for y in 0..<innerHeight { (inner + y * size * c).update(from: src + y * innerWidth * c, count: innerWidth * c) }
        }
    }
}

/// One-off resizing helpers over `Image8`.
public enum ImageResize {
    /// `image` made `size × size` by `mode`.
    public static func fit(_ image: Image8, size: Int, mode: FitMode) -> Image8 {
        let plan = ImageFit(width: image.width, height: image.height, channels: image.channels, size: size, mode: mode)
        var out = [UInt8](repeating: 0, count: size * size * image.channels)
        image.pixels.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { plan.apply(s.baseAddress!, $0.baseAddress!) } }
        return Image8(width: size, height: size, channels: image.channels, pixels: out)
    }

    /// `image` resampled to `width × height` (whole image, aspect not kept).
    public static func resample(_ image: Image8, width: Int, height: Int) -> Image8 {
        let r = Resampler(inWidth: image.width, inHeight: image.height, channels: image.channels, outWidth: width, outHeight: height)
        var out = [UInt8](repeating: 0, count: width * height * image.channels)
        image.pixels.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { r.apply(s.baseAddress!, $0.baseAddress!) } }
        return Image8(width: width, height: height, channels: image.channels, pixels: out)
    }
}
