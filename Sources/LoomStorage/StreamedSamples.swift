import Foundation

/// Float samples that arrive in order from a producer (an encoder running over MPI ranks):
/// `DatasetWriter` asks for consecutive ranges, and each request pulls blocks from `produce`
/// until it is covered, so a split is written without ever being whole in memory.
public final class StreamedSamples: SampleSource {
    /// Number of samples.
    public let count: Int
    /// One label per sample, or nil.
    public let labels: [Int]?
    /// Elements per sample.
    public let sampleCount: Int
    /// Float32.
    public var elementType: H5ElementType? { .float32 }
    /// Returns the next block of samples (whole samples, in order; never empty before the end).
    private let produce: () throws -> [Float]
    /// Samples produced but not yet handed to the writer, and the index of the first of them.
    private var pending: [Float] = []
    private var pendingStart = 0
    /// Samples produced so far.
    public private(set) var produced = 0

    /// `count` samples of `sampleCount` floats from `produce`.
    public init(count: Int, sampleCount: Int, labels: [Int]?, produce: @escaping () throws -> [Float]) {
        self.count = count
        self.sampleCount = sampleCount
        self.labels = labels
        self.produce = produce
    }

    /// Copies samples `range`, which must continue where the previous request ended.
    public func fill(_ range: Range<Int>, into destination: UnsafeMutableRawPointer) throws {
        guard range.lowerBound == pendingStart, range.upperBound <= count else {
            throw StorageError.badArgument(name: "streamed samples", value: "\(range)",
                                           expected: "the next consecutive range from \(pendingStart) within 0..<\(count)")
        }
        while produced < range.upperBound {
            let block = try produce()
            guard !block.isEmpty, block.count % sampleCount == 0, produced + block.count / sampleCount <= count else {
                throw StorageError.badArgument(name: "streamed block", value: "of \(block.count) floats after \(produced) samples",
                                               expected: "whole samples of \(sampleCount) floats, \(count) in all")
            }
            pending += block
            produced += block.count / sampleCount
        }
        let n = range.count * sampleCount
        guard n > 0 else { return }
        pending.withUnsafeBufferPointer { p in
            destination.copyMemory(from: p.baseAddress!, byteCount: n * MemoryLayout<Float>.stride)
        }
        pending.removeFirst(n)
        pendingStart = range.upperBound
    }
}
