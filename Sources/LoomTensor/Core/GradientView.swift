/// Where backward puts a leaf's gradient when data parallelism owns it, as PyTorch DDP's
/// `gradient_as_bucket_view`: a view into a flat all-reduce bucket. Backward writes every
/// contribution multiplied by `scale` (1 / ranks), so the bucket's sum over the ranks is
/// already the average gradient, and nothing is copied or scaled after the all-reduce.
///
/// A leaf's `.grad` is then `tensor` itself. Between a backward pass and the reducer's
/// synchronisation it holds this rank's share (local gradient × scale), afterwards the average
/// (identical on every rank), until `.grad` is set to nil (`zeroGrad`) and the next backward
/// overwrites it. A `.grad` the user set to a tensor of its own keeps accumulating there; the
/// reducer copies it into the bucket when it sends the bucket.
public final class GradientView {
    /// The leaf's gradient inside the bucket (the leaf's shape, no memory of its own).
    public let tensor: Tensor
    /// The factor of every contribution: 1 / number of ranks.
    public let scale: Float
    /// Whether `tensor` holds a reduced average rather than this rank's share.
    public private(set) var holdsAverage = false
    /// True while a collective owns the bucket: backward must not touch `tensor` and keeps
    /// contributions in `late` instead (set by the reducer around a non-blocking all-reduce).
    public var isBusy = false
    /// Contributions (already × scale) that arrived while the bucket was busy.
    public private(set) var late: Tensor?

    /// A view `tensor` into a bucket whose contributions are multiplied by `scale`.
    public init(tensor: Tensor, scale: Float) {
        self.tensor = tensor
        self.scale = scale
    }

    /// Makes `tensor` hold `leaf`'s share before the bucket is sent, and `leaf.grad` the view:
    /// zeros for a leaf without gradient, a scaled copy of a gradient the user set, the
    /// average scaled back to a share. A share already in place costs nothing.
    public func prepareShare(of leaf: Tensor) {
        precondition(!isBusy, "prepareShare: the bucket is in flight")
        if let g = leaf.grad {
            if g !== tensor {
                GradientView.scaled(from: g.data, into: tensor.data, scale, tensor.count)
            } else if holdsAverage {
                GradientView.scaled(from: tensor.data, into: tensor.data, scale, tensor.count)
            }
        } else {
            tensor.zero()
        }
        holdsAverage = false
        leaf.grad = tensor
    }

    /// Marks `tensor` as holding the average over ranks (after the all-reduce).
    public func markAveraged() {
        isBusy = false
        holdsAverage = true
    }

    /// The contributions that arrived while the bucket was busy (nil if none); clears them.
    public func takeLate() -> Tensor? {
        defer { late = nil }
        return late
    }

    /// Adds backward's gradient `g` of `leaf` (whose view this is) to the leaf's gradient;
    /// false when `.grad` is a tensor of the user's own, which the caller accumulates into.
    func accumulate(_ g: Tensor, into leaf: Tensor, createGraph: Bool) -> Bool {
        precondition(g.count == tensor.count, "gradient of \(g.count) elements for a view of \(tensor.count)")
        if isBusy {
            // MPI owns the bucket until the reducer waits for it; the reducer adds these after.
            if let l = late {
                GradientView.addScaled(g.data, into: l.data, scale, l.count)
            } else {
                let l = Tensor(uninitialized: tensor.shape)
                GradientView.scaled(from: g.data, into: l.data, scale, l.count)
                late = l
            }
            return true
        }
        if createGraph {
            // The tape needs `.grad` as a tensor of its own: the gradient so far plus g, on the
            // tape; the reducer copies it into the bucket when it sends it.
            guard leaf.grad === tensor else { return false }
            let sofar = tensor.copy()
            if !holdsAverage { GradientView.scaled(from: sofar.data, into: sofar.data, 1 / scale, sofar.count) }
            leaf.grad = sofar + g
            return true
        }
        if leaf.grad == nil {
            GradientView.scaled(from: g.data, into: tensor.data, scale, tensor.count)
        } else if leaf.grad === tensor {
            if holdsAverage {
                // Accumulating onto an average without zeroGrad: the average becomes a share again.
                GradientView.scaledSum(tensor.data, g.data, into: tensor.data, scale, tensor.count)
            } else {
                GradientView.addScaled(g.data, into: tensor.data, scale, tensor.count)
            }
        } else {
            return false
        }
        holdsAverage = false
        leaf.grad = tensor
        return true
    }

    /// dst = s · src (dst may be src).
    static func scaled(from src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ s: Float, _ n: Int) {
        Parallel.forRange(n, grain: 1 << 15) { r in
            for i in r { dst[i] = s * src[i] }
        }
    }

    /// dst += s · src.
    static func addScaled(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ s: Float, _ n: Int) {
        Parallel.forRange(n, grain: 1 << 15) { r in
            for i in r { dst[i] += s * src[i] }
        }
    }

    /// dst = s · a + s · b (dst may be a).
    static func scaledSum(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>,
                          _ s: Float, _ n: Int) {
        Parallel.forRange(n, grain: 1 << 15) { r in
            for i in r { dst[i] = s * a[i] + s * b[i] }
        }
    }
}
