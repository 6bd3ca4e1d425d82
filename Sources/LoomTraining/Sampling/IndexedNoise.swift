import Foundation
import LoomTensor

/// Per-image random streams for sampling: image `i` of a sampling run (its index in the whole
/// run, whatever batch or rank computes it) draws all its noise — the initial x_T, every
/// stochastic step, a GAN's or VAE's latent — from its own Philox stream (seed, i, sampling).
/// A run split over any number of ranks or batches therefore draws the same numbers for
/// every image, which is what makes `mpirun -np N loom sample` write the same file for any N.
public struct IndexedNoise {
    /// The first image's index.
    public let first: Int
    /// One stream per image, in index order.
    public private(set) var streams: [RandomStream]

    /// Streams for images `indices` of a run seeded with `seed`.
    public init(seed: UInt64, indices: Range<Int>) {
        first = indices.lowerBound
        streams = indices.map { RandomStream(seed: seed, rank: $0, purpose: .sampling) }
    }

    /// The number of images.
    public var count: Int { streams.count }

    /// `[count] + rowShape` standard normals, row r from image r's stream (which advances).
    public mutating func normal(_ rowShape: [Int]) -> Tensor {
        let per = rowShape.reduce(1, *)
        let t = Tensor(uninitialized: [streams.count] + rowShape)
        for r in streams.indices { streams[r].fillNormal(t.data + r * per, count: per) }
        return t
    }

    /// A tensor of `shape` (`[count, …]`) of standard normals, row by row as `normal(_:)`.
    public mutating func normal(shape: [Int]) -> Tensor {
        precondition(shape.first == streams.count, "IndexedNoise: \(shape) for \(streams.count) images")
        return normal(Array(shape.dropFirst()))
    }

    /// The class of each image: `label` for all, or the index modulo `classes` (0, 1, 2, … in
    /// turn over the whole run); nil for an unconditional model.
    public static func labels(indices: Range<Int>, classes: Int, label: Int?) -> [Int]? {
        classes > 0 ? indices.map { label ?? ($0 % classes) } : nil
    }
}
