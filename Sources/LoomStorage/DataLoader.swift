import Foundation
import LoomTensor

/// Where the loader keeps the samples it reads.
public enum Residency: Equatable, Sendable {
    /// Read the whole split into memory at open (fastest; every rank holds a copy).
    case memory
    /// Read each sample from its shard when needed (HDF5's chunk cache absorbs repeats).
    case stream
    /// Memory when the split's bytes fit `maxBytes`, else stream.
    case auto(maxBytes: Int)
}

/// How a `DataLoader` batches, shards and augments.
public struct LoaderOptions: Sendable {
    /// Samples per rank per step.
    public var batchSize: Int
    /// This process's rank.
    public var rank: Int
    /// Number of ranks.
    public var worldSize: Int
    /// Seed of the epoch permutations and flips.
    public var seed: UInt64
    /// Shuffle each epoch (off: every epoch in split order, for evaluation).
    public var shuffle: Bool
    /// Random horizontal flips (decided per sample and epoch).
    public var flip: Bool
    /// Batches prepared ahead on the background thread.
    public var prefetch: Int
    /// Memory or streaming reads.
    public var residency: Residency

    /// Options for `batchSize` samples per rank; the rest default to one rank, seed 0,
    /// shuffling, no flips, 4 batches of prefetch, memory residency up to 2 GiB.
    public init(batchSize: Int, rank: Int = 0, worldSize: Int = 1, seed: UInt64 = 0, shuffle: Bool = true,
                flip: Bool = false, prefetch: Int = 4, residency: Residency = .auto(maxBytes: 2 << 30)) {
        self.batchSize = batchSize
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.shuffle = shuffle
        self.flip = flip
        self.prefetch = prefetch
        self.residency = residency
    }
}

/// One rank's part of one global batch.
public struct Batch {
    /// `[B, H, W, C]` float32: images scaled to [-1, 1] (0 → -1, 255 → 1), latents as stored.
    public var images: Tensor
    /// One label per sample (empty when the dataset has none).
    public var labels: [Int]
    /// The split indices of the samples.
    public var indices: [Int]
    /// The cursor this batch was taken at (normalised: never past an epoch's end).
    public var cursor: DataCursor
    /// The cursor after this global batch: save it to resume after this step.
    public var next: DataCursor

    /// A batch built by hand (synthetic data for benchmarks and tests).
    public init(images: Tensor, labels: [Int], indices: [Int] = [], cursor: DataCursor = DataCursor(), next: DataCursor = DataCursor()) {
        self.images = images
        self.labels = labels
        self.indices = indices
        self.cursor = cursor
        self.next = next
    }
}

/// Yields this rank's batches of a `ShardedDataset` forever, epoch after epoch, from a
/// background thread that keeps `prefetch` batches ready: when the loader is faster than
/// the training step, `next()` never waits.
public final class DataLoader {
    /// The dataset split read.
    public let dataset: ShardedDataset
    /// The options.
    public let options: LoaderOptions
    /// Whether samples were read into memory at open.
    public let inMemory: Bool
    /// Where the next `next()` continues; save it with a checkpoint.
    public private(set) var cursor: DataCursor
    /// Calls of `next()` that found no batch ready and waited.
    public private(set) var waits = 0
    /// Total seconds `next()` spent waiting.
    public private(set) var waitSeconds = 0.0

    private let state: Pipeline

    /// Opens a loader at `cursor` (default: the start). Fails if the global batch exceeds the split.
    public init(dataset: ShardedDataset, options: LoaderOptions, cursor: DataCursor = DataCursor()) throws {
        let o = options
        guard o.batchSize > 0, o.worldSize > 0, (0..<o.worldSize).contains(o.rank), o.prefetch > 0 else {
            throw StorageError.badArgument(name: "loader options",
                                           value: "batch \(o.batchSize), rank \(o.rank) of \(o.worldSize), prefetch \(o.prefetch)",
                                           expected: "positive batch and prefetch, 0 ≤ rank < world size")
        }
        guard o.batchSize * o.worldSize <= dataset.count else {
            throw StorageError.badArgument(name: "global batch", value: "\(o.batchSize) × \(o.worldSize) ranks",
                                           expected: "at most the \(dataset.count) samples of \(dataset.folder) split \(dataset.split)")
        }
        guard cursor.epoch >= 0, cursor.position >= 0 else {
            throw StorageError.badArgument(name: "cursor", value: "epoch \(cursor.epoch), position \(cursor.position)", expected: "non-negative")
        }
        self.dataset = dataset
        self.options = options
        self.cursor = cursor
        switch options.residency {
        case .memory: inMemory = true
        case .stream: inMemory = false
        case .auto(let maxBytes): inMemory = dataset.totalBytes <= maxBytes
        }
        var resident: UnsafeMutableRawPointer?
        if inMemory {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(dataset.totalBytes, 1), alignment: 64)
            do { try dataset.read(0..<dataset.count, into: buffer) } catch { buffer.deallocate(); throw error }
            resident = buffer
        }
        state = Pipeline(dataset: dataset, options: options, resident: resident, start: cursor)
        // The thread drops its reference before it reports that it ended, so the pipeline
        // (and the dataset's HDF5 ids) are released on the caller's thread, never by an
        // exiting thread racing HDF5's shutdown at process exit.
        final class Reference: @unchecked Sendable { var pipeline: Pipeline?; init(_ p: Pipeline) { pipeline = p } }
        let reference = Reference(state)
        let exited = state.exited
        let thread = Thread {
            reference.pipeline?.run()
            reference.pipeline = nil
            exited.signal()
        }
        thread.name = "loom-data-prefetch"
        thread.start()
    }

    /// Full global batches per epoch.
    public var stepsPerEpoch: Int { EpochPlan.stepsPerEpoch(count: dataset.count, globalBatch: options.batchSize * options.worldSize) }

    /// The next batch; rethrows a read error from the background thread (naming the shard).
    public func next() throws -> Batch {
        let result = state.take { seconds in
            waits += 1
            waitSeconds += seconds
        }
        let batch = try result.get()
        cursor = batch.next
        return batch
    }

    /// Stops the background thread and waits for it to finish.
    public func close() { state.stop() }

    deinit { state.stop() }
}

/// The producer side, shared with the background thread (the loader itself is not captured,
/// so dropping the loader stops the thread).
final class Pipeline: @unchecked Sendable {
    let dataset: ShardedDataset
    let options: LoaderOptions
    /// The whole split when memory-resident (owned: freed with the pipeline).
    let resident: UnsafeMutableRawPointer?
    private let condition = NSCondition()
    private var queue: [Result<Batch, Error>] = []
    private var stopping = false
    private var finished = false
    /// Set by the thread after it released the pipeline.
    let exited = Latch()
    private var produce: DataCursor

    init(dataset: ShardedDataset, options: LoaderOptions, resident: UnsafeMutableRawPointer?, start: DataCursor) {
        self.dataset = dataset
        self.options = options
        self.resident = resident
        self.produce = start
    }

    deinit { resident?.deallocate() }

    /// Background loop: fill the queue up to `prefetch`, then sleep until a batch is taken.
    func run() {
        var permutationEpoch = -1
        var permutation: [Int] = []
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(dataset.sampleBytes, 1), alignment: 64)
        defer {
            scratch.deallocate()
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        let globalBatch = options.batchSize * options.worldSize
        while true {
            condition.lock()
            while queue.count >= options.prefetch && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let at = EpochPlan.normalized(produce, count: dataset.count, globalBatch: globalBatch)
            condition.unlock()

            if at.epoch != permutationEpoch {
                permutation = EpochPlan.permutation(count: dataset.count, seed: options.seed, epoch: at.epoch, shuffle: options.shuffle)
                permutationEpoch = at.epoch
            }
            let slice = EpochPlan.rankSlice(position: at.position, batchSize: options.batchSize, rank: options.rank)
            let indices = Array(permutation[slice])
            let next = DataCursor(epoch: at.epoch, position: at.position + globalBatch)
            let result = Result { try assemble(indices, epoch: at.epoch, cursor: at, next: next, scratch: scratch) }

            condition.lock()
            queue.append(result)
            produce = next
            condition.broadcast()
            condition.unlock()
            if case .failure = result { return }
        }
    }

    /// Decodes `indices` into one batch tensor.
    func assemble(_ indices: [Int], epoch: Int, cursor: DataCursor, next: DataCursor,
                  scratch: UnsafeMutableRawPointer) throws -> Batch {
        let shape = dataset.sampleShape
        let n = dataset.sampleCount, sampleBytes = dataset.sampleBytes
        let images = Tensor(uninitialized: [indices.count] + shape)
        let kind = dataset.index.kind
        for (k, i) in indices.enumerated() {
            let source: UnsafeRawPointer
            if let resident {
                source = UnsafeRawPointer(resident + i * sampleBytes)
            } else {
                try dataset.read(sample: i, into: scratch)
                source = UnsafeRawPointer(scratch)
            }
            let flip = options.flip && EpochPlan.flips(sample: i, seed: options.seed, epoch: epoch)
            let destination = images.data + k * n
            if kind == .images {
                SampleDecode.bytes(source.assumingMemoryBound(to: UInt8.self), to: destination, shape: shape, flip: flip)
            } else {
                SampleDecode.floats(source.assumingMemoryBound(to: Float.self), to: destination, shape: shape, flip: flip)
            }
        }
        let labels = dataset.labels.map { l in indices.map { l[$0] } } ?? []
        return Batch(images: images, labels: labels, indices: indices, cursor: cursor, next: next)
    }

    /// Pops the oldest batch, waiting if none is ready; `waited` gets the seconds waited.
    func take(_ waited: (Double) -> Void) -> Result<Batch, Error> {
        condition.lock()
        defer { condition.unlock() }
        if queue.isEmpty {
            let start = DispatchTime.now().uptimeNanoseconds
            while queue.isEmpty {
                if finished && !stopping {
                    // The producer stopped after an error it already queued and was taken.
                    return .failure(StorageError.io(path: dataset.folder, operation: "load", reason: "the loader stopped after an error"))
                }
                if stopping { return .failure(StorageError.io(path: dataset.folder, operation: "load", reason: "the loader is closed")) }
                condition.wait()
            }
            waited(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
        let result = queue.removeFirst()
        condition.broadcast()
        return result
    }

    /// Asks the thread to stop and waits until it has ended.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        exited.wait()
    }
}

/// A one-shot flag that can be waited for.
final class Latch: @unchecked Sendable {
    private let condition = NSCondition()
    private var isSet = false

    func signal() {
        condition.lock()
        isSet = true
        condition.broadcast()
        condition.unlock()
    }

    func wait() {
        condition.lock()
        while !isSet { condition.wait() }
        condition.unlock()
    }
}

/// Sample decoding into float tensors.
enum SampleDecode {
    /// uint8 → float in [-1, 1] for every byte value: exact at 0 → -1 and 255 → 1, and one
    /// load per byte instead of a convert and a multiply.
    static let byteToUnit: [Float] = (0..<256).map { (Float($0) - 127.5) / 127.5 }

    /// uint8 HWC → float in [-1, 1], mirrored along W when `flip`.
    @inline(__always)
    static func bytes(_ src: UnsafePointer<UInt8>, to dst: UnsafeMutablePointer<Float>, shape: [Int], flip: Bool) {
        let h = shape[0], w = shape[1], c = shape[2]
        byteToUnit.withUnsafeBufferPointer { table in
            let t = table.baseAddress!
            if !flip {
                for i in 0..<(h * w * c) { dst[i] = t[Int(src[i])] }
                return
            }
            for y in 0..<h {
                let row = y * w * c
                for x in 0..<w {
                    let s = row + (w - 1 - x) * c, d = row + x * c
                    for k in 0..<c { dst[d + k] = t[Int(src[s + k])] }
                }
            }
        }
    }

    /// float HWC copied, mirrored along W when `flip`.
    @inline(__always)
    static func floats(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, shape: [Int], flip: Bool) {
        let h = shape[0], w = shape[1], c = shape[2]
        if !flip { dst.update(from: src, count: h * w * c); return }
        for y in 0..<h {
            let row = y * w * c
            for x in 0..<w { (dst + row + x * c).update(from: src + row + (w - 1 - x) * c, count: c) }
        }
    }
}
