import Foundation

/// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, as in cuRAND and
/// PyTorch): a stream is a key and a counter, so its state saves and restores exactly and
/// any element can be computed independently (parallel fills give the same numbers).

/// What a random stream is used for; each purpose gets an independent stream.
public enum RandomPurpose: UInt64, Sendable {
    case initialization = 1, data = 2, noise = 3, dropout = 4, sampling = 5
}

/// A Philox4x32-10 stream: `key` picks the stream, `counter` counts 128-bit blocks used.
public struct RandomStream: Equatable, Sendable, Codable {
    /// The stream's key (derived from seed, rank and purpose).
    public var key: UInt64
    /// How many 4×32-bit blocks have been consumed.
    public var counter: UInt64

    /// A stream with an explicit key, starting at block 0.
    public init(key: UInt64, counter: UInt64 = 0) {
        self.key = key
        self.counter = counter
    }

    /// The stream for (`seed`, `rank`, `purpose`): independent for every combination.
    public init(seed: UInt64, rank: Int = 0, purpose: RandomPurpose) {
        self.init(key: splitMix64(splitMix64(splitMix64(seed) ^ UInt64(rank)) &+ purpose.rawValue))
    }

    /// Block `index` of the stream: four independent uniform 32-bit words.
    @inline(__always)
    public static func block(key: UInt64, index: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        var c0 = UInt32(truncatingIfNeeded: index), c1 = UInt32(truncatingIfNeeded: index >> 32)
        var c2: UInt32 = 0, c3: UInt32 = 0
        var k0 = UInt32(truncatingIfNeeded: key), k1 = UInt32(truncatingIfNeeded: key >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let hi0 = UInt32(p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    @inline(__always)
    static func unit(_ w: UInt32) -> Float {
        // 24 random bits → [0, 1), then shifted into (0, 1] so log() never sees zero.
        Float(w >> 8) * (1.0 / 16_777_216.0) + (0.5 / 16_777_216.0)
    }

    /// Fills `n` floats uniform in (0, 1) and advances the stream.
    public mutating func fillUniform(_ p: UnsafeMutablePointer<Float>, count n: Int) {
        let key = self.key, base = counter
        let blocks = (n + 3) / 4
        Parallel.forRange(blocks, grain: 4096) { r in
            for b in r {
                let (w0, w1, w2, w3) = RandomStream.block(key: key, index: base &+ UInt64(b))
                let i = b * 4
                p[i] = RandomStream.unit(w0)
                if i + 1 < n { p[i + 1] = RandomStream.unit(w1) }
                if i + 2 < n { p[i + 2] = RandomStream.unit(w2) }
                if i + 3 < n { p[i + 3] = RandomStream.unit(w3) }
            }
        }
        counter &+= UInt64(blocks)
    }

    /// Fills `n` standard normal floats (Box–Muller) and advances the stream.
    public mutating func fillNormal(_ p: UnsafeMutablePointer<Float>, count n: Int) {
        let key = self.key, base = counter
        let blocks = (n + 3) / 4
        Parallel.forRange(blocks, grain: 2048) { r in
            for b in r {
                let (w0, w1, w2, w3) = RandomStream.block(key: key, index: base &+ UInt64(b))
                let r0 = (-2 * log(RandomStream.unit(w0))).squareRoot()
                let r1 = (-2 * log(RandomStream.unit(w2))).squareRoot()
                let t0 = 2 * Float.pi * RandomStream.unit(w1), t1 = 2 * Float.pi * RandomStream.unit(w3)
                let v = (r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1))
                let i = b * 4
                p[i] = v.0
                if i + 1 < n { p[i + 1] = v.1 }
                if i + 2 < n { p[i + 2] = v.2 }
                if i + 3 < n { p[i + 3] = v.3 }
            }
        }
        counter &+= UInt64(blocks)
    }

    /// A uniform integer in `0..<bound` (one block).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0)
        let (w0, w1, _, _) = RandomStream.block(key: key, index: counter)
        counter &+= 1
        return Int((UInt64(w0) << 32 | UInt64(w1)) % UInt64(bound))
    }

    /// A uniform float in (0, 1) (one block).
    public mutating func nextUniform() -> Float {
        let (w0, _, _, _) = RandomStream.block(key: key, index: counter)
        counter &+= 1
        return RandomStream.unit(w0)
    }

    /// A random permutation of `0..<n` (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, nextInt(below: i + 1)) }
        return p
    }
}

/// SplitMix64 finaliser: mixes a 64-bit value into a well-spread key.
@inline(__always)
public func splitMix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

extension Tensor {
    /// Uniform values in [low, high) from `stream`.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, stream: inout RandomStream) -> Tensor {
        let t = Tensor(uninitialized: shape)
        stream.fillUniform(t.data, count: t.count)
        if low != 0 || high != 1 { for i in 0..<t.count { t.data[i] = low + (high - low) * t.data[i] } }
        return t
    }

    /// Normal values with `mean` and `std` from `stream`.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, stream: inout RandomStream) -> Tensor {
        let t = Tensor(uninitialized: shape)
        stream.fillNormal(t.data, count: t.count)
        if mean != 0 || std != 1 { for i in 0..<t.count { t.data[i] = mean + std * t.data[i] } }
        return t
    }
}
