import LoomTensor

/// Averages gradients over all ranks in flat buckets, the way PyTorch DDP does: one
/// all-reduce per bucket (~25 MB by default) instead of one per tensor.
///
/// With `overlap`, a bucket's non-blocking all-reduce starts from the parameters'
/// `onGradientReady` hooks as soon as its last gradient is final during backward, so
/// communication runs while the rest of backward computes. `synchronize()` then waits.
public final class GradientReducer {
    /// Default bucket capacity, as in DDP.
    public static let defaultBucketBytes = 25 << 20

    struct Bucket {
        var members: [Int] = []        // indices into `parameters`
        var offsets: [Int] = []        // element offset of each member in the flat buffer
        var count = 0
        var buffer: Tensor?
        var pendingGradients = 0
        var inFlight: PendingCollective?
        var stale = false              // a member's gradient changed after the bucket was packed
    }

    let communicator: Communicator
    let parameters: [Tensor]
    private(set) var buckets: [Bucket] = []
    private var bucketOf: [Int] = []   // parameter index → bucket index
    /// Whether all-reduces start during backward (set at creation).
    public let overlap: Bool

    /// Buckets `parameters` in reverse order (gradients arrive roughly last layer first).
    public init(parameters: [Tensor], communicator: Communicator,
                bucketBytes: Int = GradientReducer.defaultBucketBytes, overlap: Bool = false) {
        self.communicator = communicator
        self.parameters = parameters
        self.overlap = overlap
        let capacity = max(1, bucketBytes / MemoryLayout<Float>.size)
        bucketOf = [Int](repeating: 0, count: parameters.count)
        var current = Bucket()
        for i in parameters.indices.reversed() {
            if current.count > 0 && current.count + parameters[i].count > capacity {
                buckets.append(current)
                current = Bucket()
            }
            current.members.append(i)
            current.offsets.append(current.count)
            current.count += parameters[i].count
            bucketOf[i] = buckets.count
        }
        if current.count > 0 { buckets.append(current) }
        for b in buckets.indices {
            buckets[b].buffer = Tensor(uninitialized: [buckets[b].count])
            buckets[b].pendingGradients = buckets[b].members.count
        }
        if overlap {
            for (i, p) in parameters.enumerated() {
                p.onGradientReady = { [unowned self] _ in self.gradientReady(i) }
            }
        }
    }

    /// Number of buckets and their sizes in elements (for logs and tests).
    public var bucketSizes: [Int] { buckets.map(\.count) }

    /// False while accumulating gradients over micro-batches that are not the last (PyTorch's
    /// `no_sync`): hooks then start nothing, so overlapped buckets go out once, with the sum.
    public var startsDuringBackward = true

    func gradientReady(_ i: Int) {
        guard startsDuringBackward else { return }
        let b = bucketOf[i]
        buckets[b].pendingGradients -= 1
        if buckets[b].pendingGradients == 0 { launch(b) }
        // Another backward before `synchronize()` (gradient accumulation) added to a gradient
        // that is already on its way: the bucket must be sent again with the final values.
        if buckets[b].pendingGradients < 0 { buckets[b].stale = true }
    }

    private func launch(_ b: Int) {
        pack(b)
        if communicator.size == 1 { buckets[b].inFlight = nil; return }
        do {
            buckets[b].inFlight = try communicator.startAllReduceSum(buckets[b].buffer!.data, count: buckets[b].count)
        } catch {
            communicator.abort("gradient all-reduce failed: \(error)")
        }
    }

    /// Copies the members' gradients into the flat buffer (zeros for a missing gradient).
    private func pack(_ b: Int) {
        let bucket = buckets[b], flat = bucket.buffer!.data
        for (k, i) in bucket.members.enumerated() {
            let p = parameters[i], dst = flat + bucket.offsets[k]
            if let g = p.grad { dst.update(from: g.data, count: p.count) } else { dst.update(repeating: 0, count: p.count) }
        }
    }

    /// Writes the averaged buffer back into every member's `.grad`.
    private func unpack(_ b: Int) {
        let bucket = buckets[b], flat = bucket.buffer!.data
        let scale = 1 / Float(communicator.size)
        for (k, i) in bucket.members.enumerated() {
            let p = parameters[i], src = flat + bucket.offsets[k]
            if p.grad == nil { p.grad = Tensor(uninitialized: p.shape) }
            let dst = p.grad!.data
            for j in 0..<p.count { dst[j] = src[j] * scale }
        }
        buckets[b].pendingGradients = bucket.members.count
    }

    /// Makes every parameter's `.grad` the average over ranks. Call after `backward()` on
    /// every rank (the same number of times: it is a collective).
    public func synchronize() throws {
        for b in buckets.indices {
            if overlap {
                // Buckets whose gradients never all arrived (unused parameters) start now,
                // in bucket order, which is the same on every rank.
                if buckets[b].pendingGradients > 0 { launch(b) }
                try buckets[b].inFlight?.wait()
                buckets[b].inFlight = nil
                if buckets[b].stale {
                    // Every rank ran the same backward passes, so all agree on staleness.
                    buckets[b].stale = false
                    pack(b)
                    if communicator.size > 1 {
                        try communicator.allReduceSum(buckets[b].buffer!.data, count: buckets[b].count)
                    }
                }
            } else {
                pack(b)
                if communicator.size > 1 {
                    try communicator.allReduceSum(buckets[b].buffer!.data, count: buckets[b].count)
                }
            }
            unpack(b)
        }
    }
}
