import LoomTensor

/// Averages gradients over all ranks in flat buckets, the way PyTorch DDP does with
/// `gradient_as_bucket_view=True`: one all-reduce per bucket (~25 MB by default) instead of one
/// per tensor, and every parameter's `.grad` a view into its bucket.
///
/// Each parameter gets a `GradientView`: backward writes its gradient straight into the bucket,
/// multiplied by 1/ranks, so the all-reduced bucket is the averaged gradient itself — no copy
/// into the bucket before, no copy or scaling pass after. Between backward and `synchronize()`
/// a parameter's `.grad` therefore holds its local gradient divided by the number of ranks.
///
/// With `overlap`, a bucket's non-blocking all-reduce starts from the parameters'
/// `onGradientReady` hooks as soon as its last gradient is final during backward, so
/// communication runs while the rest of backward computes. `synchronize()` then waits.
/// A parameter belongs to one reducer at a time (a new reducer takes it over).
public final class GradientReducer {
    /// Default bucket capacity, as in DDP.
    public static let defaultBucketBytes = 25 << 20

    struct Bucket {
        var members: [Int] = []        // indices into `parameters`
        var offsets: [Int] = []        // element offset of each member in the flat buffer
        var count = 0
        var buffer = Tensor.zeros([0])
        var pendingGradients = 0
        var launched = false
        var inFlight: PendingCollective?
    }

    let communicator: Communicator
    let parameters: [Tensor]
    private(set) var buckets: [Bucket] = []
    private var bucketOf: [Int] = []   // parameter index → bucket index
    private var views: [GradientView] = []
    /// Whether all-reduces start during backward (set at creation).
    public let overlap: Bool
    /// Buckets corrected after their all-reduce because gradients arrived while they were in
    /// flight (another backward before `synchronize()`); for logs and tests.
    public private(set) var lateCorrections = 0

    /// Buckets `parameters` in reverse order (gradients arrive roughly last layer first) and
    /// points every parameter's gradient into its bucket. A parameter listed twice counts once.
    public init(parameters: [Tensor], communicator: Communicator,
                bucketBytes: Int = GradientReducer.defaultBucketBytes, overlap: Bool = false) {
        var seen = Set<ObjectIdentifier>()
        let parameters = parameters.filter { seen.insert(ObjectIdentifier($0)).inserted }
        self.communicator = communicator
        self.parameters = parameters
        self.overlap = overlap
        let capacity = max(1, bucketBytes / MemoryLayout<Float>.size)
        bucketOf = [Int](repeating: 0, count: parameters.count)
        var current = Bucket()
        for i in parameters.indices.reversed() {
            let n = parameters[i].count
            // Members start on 64-byte boundaries (the padding is zeros and stays zeros).
            var offset = n == 0 ? current.count : (current.count + 15) & ~15
            if current.count > 0 && offset + n > capacity {
                buckets.append(current)
                current = Bucket()
                offset = 0
            }
            current.members.append(i)
            current.offsets.append(offset)
            current.count = max(current.count, offset + n)
            bucketOf[i] = buckets.count
        }
        if !current.members.isEmpty { buckets.append(current) }
        let scale = 1 / Float(communicator.size)
        views = parameters.map { _ in GradientView(tensor: Tensor.zeros([0]), scale: scale) }
        for b in buckets.indices {
            let buffer = Tensor.zeros([buckets[b].count])
            buckets[b].buffer = buffer
            buckets[b].pendingGradients = buckets[b].members.count
            for (k, i) in buckets[b].members.enumerated() {
                let p = parameters[i]
                let storage = Storage(viewing: buffer.storage, offset: buckets[b].offsets[k], count: p.count)
                views[i] = GradientView(tensor: Tensor(shape: p.shape, storage: storage), scale: scale)
            }
        }
        for (i, p) in parameters.enumerated() {
            p.gradientView = views[i]
            if overlap { p.onGradientReady = { [unowned self] _ in self.gradientReady(i) } }
        }
    }

    deinit {
        for (i, p) in parameters.enumerated() where p.gradientView === views[i] {
            p.gradientView = nil
            if overlap { p.onGradientReady = nil }
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
        // A gradient that arrives again after its bucket went out (another backward before
        // `synchronize()`) waits in its view's `late` and is added after the wait.
        if buckets[b].pendingGradients == 0 && !buckets[b].launched { launch(b) }
    }

    /// Puts every member's share into the bucket (only members whose `.grad` is not already
    /// their view cost a pass) and, with more than one rank, starts the non-blocking sum.
    private func launch(_ b: Int) {
        prepare(b)
        buckets[b].launched = true
        guard communicator.size > 1, buckets[b].count > 0 else { return }
        for i in buckets[b].members { views[i].isBusy = true }
        do {
            buckets[b].inFlight = try communicator.startAllReduceSum(buckets[b].buffer.data, count: buckets[b].count)
        } catch {
            communicator.abort("gradient all-reduce failed: \(error)")
        }
    }

    private func prepare(_ b: Int) {
        for i in buckets[b].members { views[i].prepareShare(of: parameters[i]) }
    }

    /// After the sum: every member's view holds the average; ready for the next pass.
    private func finish(_ b: Int) {
        for i in buckets[b].members { views[i].markAveraged() }
        buckets[b].pendingGradients = buckets[b].members.count
        buckets[b].launched = false
    }

    /// Adds the contributions that arrived while bucket `b` was in flight: summed over the
    /// ranks in a scratch buffer of the bucket's size, then added to the bucket.
    private func addLateContributions(_ b: Int) throws {
        let bucket = buckets[b]
        let lates = bucket.members.map { views[$0].takeLate() }
        // Every rank ran the same backward passes, so all agree on whether this bucket has any.
        guard lates.contains(where: { $0 != nil }) else { return }
        let scratch = Tensor.zeros([bucket.count])
        for (k, late) in lates.enumerated() {
            if let late { (scratch.data + bucket.offsets[k]).update(from: late.data, count: late.count) }
        }
        if communicator.size > 1 { try communicator.allReduceSum(scratch.data, count: bucket.count) }
        let dst = bucket.buffer.data, src = scratch.data
        for j in 0..<bucket.count { dst[j] += src[j] }
        lateCorrections += 1
    }

    /// Makes every parameter's `.grad` the average over ranks (a view into its bucket). Call
    /// after `backward()` on every rank (the same number of times: it is a collective).
    public func synchronize() throws {
        if overlap {
            // Buckets whose gradients never all arrived (unused parameters, or hooks held back
            // by `startsDuringBackward`) start now, in bucket order, the same on every rank.
            for b in buckets.indices where !buckets[b].launched { launch(b) }
            for b in buckets.indices {
                try buckets[b].inFlight?.wait()
                buckets[b].inFlight = nil
                for i in buckets[b].members { views[i].isBusy = false }
                try addLateContributions(b)
                finish(b)
            }
        } else {
            for b in buckets.indices {
                prepare(b)
                if communicator.size > 1 && buckets[b].count > 0 {
                    try communicator.allReduceSum(buckets[b].buffer.data, count: buckets[b].count)
                }
                finish(b)
            }
        }
    }
}
