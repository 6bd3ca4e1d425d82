import Foundation
import LoomTensor

/// A separable Gaussian blur of NHWC images (a deliberately degraded reference set for the
/// metrics): kernel taps exp(−x²/2σ²) for |x| ≤ ⌈3σ⌉, normalised to sum 1, with reflecting
/// borders (PyTorch's `reflect` padding: the edge pixel is not repeated).
public enum GaussianBlur {
    /// The normalised 1-D kernel for `sigma` (> 0).
    public static func kernel(sigma: Double) -> [Double] {
        let radius = Int((3 * sigma).rounded(.up))
        let taps = (-radius...radius).map { exp(-Double($0 * $0) / (2 * sigma * sigma)) }
        let sum = taps.reduce(0, +)
        return taps.map { $0 / sum }
    }

    /// Reflects index `i` into `0..<n` (…, 2, 1, 0, 1, 2, …, n−2, n−1, n−2, …).
    static func reflect(_ i: Int, _ n: Int) -> Int {
        guard n > 1 else { return 0 }
        let period = 2 * (n - 1)
        var j = i % period
        if j < 0 { j += period }
        return j < n ? j : period - j
    }

    /// `images` `[N, H, W, C]` blurred along H and W with `sigma` pixels.
    public static func apply(_ images: Tensor, sigma: Double) -> Tensor {
        precondition(images.rank == 4 && sigma > 0, "GaussianBlur: images \(images.shape), sigma \(sigma)")
        let (n, h, w, c) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let k = kernel(sigma: sigma), r = k.count / 2
        let out = Tensor(uninitialized: images.shape)
        let src = images.data, dst = out.data
        Parallel.forRange(n, grain: 16) { range in
            var rowPass = [Double](repeating: 0, count: h * w * c)
            for img in range {
                let s = src + img * h * w * c, d = dst + img * h * w * c
                for y in 0..<h { for x in 0..<w { for ch in 0..<c {
                    var acc = 0.0
                    for t in 0..<k.count { acc += k[t] * Double(s[(y * w + reflect(x + t - r, w)) * c + ch]) }
                    rowPass[(y * w + x) * c + ch] = acc
                } } }
                for y in 0..<h { for x in 0..<w { for ch in 0..<c {
                    var acc = 0.0
                    for t in 0..<k.count { acc += k[t] * rowPass[(reflect(y + t - r, h) * w + x) * c + ch] }
                    d[(y * w + x) * c + ch] = Float(acc)
                } } }
            }
        }
        return out
    }
}
