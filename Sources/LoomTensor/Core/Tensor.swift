/// A dense, contiguous float32 tensor on the CPU.
///
/// Shapes follow the NHWC convention for images (`[N, H, W, C]`, as in MLX): memory order
/// equals shape order everywhere, which is what oneDNN's fast convolutions want.
/// Weights keep PyTorch's shapes (conv `[O, I, kh, kw]`, linear `[out, in]`).
public final class Tensor {
    /// Extent of each axis.
    public let shape: [Int]
    /// The buffer; several tensors may share it (`reshaped`, `detached`).
    public let storage: Storage
    /// Whether gradients flow into this tensor.
    public var requiresGrad: Bool
    /// Accumulated gradient after `backward()` (leaves only).
    public var grad: Tensor?
    /// The recorded operation that produced this tensor, or nil for leaves.
    public internal(set) var gradFn: Node?
    /// Called during `backward()` as soon as this leaf's `.grad` is final for the pass
    /// (PyTorch's post-accumulate-grad hook): data parallelism starts all-reducing here.
    public var onGradientReady: ((Tensor) -> Void)?
    /// Set by data parallelism's gradient reducer: backward then writes this leaf's gradient
    /// into an all-reduce bucket, pre-scaled (see `GradientView`).
    public var gradientView: GradientView?

    /// Number of elements.
    @inlinable public var count: Int { storage.count }
    /// Number of axes.
    @inlinable public var rank: Int { shape.count }
    /// Pointer to the first element (contiguous, row-major).
    @inlinable public var data: UnsafeMutablePointer<Float> { storage.data }

    /// An uninitialised tensor of `shape` (every element must be written before it is read).
    public init(uninitialized shape: [Int], requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
        self.shape = shape
        self.storage = Storage(count: shape.reduce(1, *))
        self.requiresGrad = requiresGrad
    }

    /// A tensor viewing `storage` with `shape` (no copy).
    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        precondition(shape.reduce(1, *) == storage.count, "shape \(shape) does not match \(storage.count) elements")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// A tensor holding `values` in row-major order.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values do not fill shape \(shape)")
        self.init(uninitialized: shape, requiresGrad: requiresGrad)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A tensor filled with `value`.
    public convenience init(repeating value: Float, shape: [Int], requiresGrad: Bool = false) {
        self.init(uninitialized: shape, requiresGrad: requiresGrad)
        data.update(repeating: value, count: count)
    }

    /// Zeros of `shape`.
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(repeating: 0, shape: shape, requiresGrad: requiresGrad)
    }

    /// Ones of `shape`.
    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(repeating: 1, shape: shape, requiresGrad: requiresGrad)
    }

    /// A scalar (rank 0) tensor.
    public static func scalar(_ v: Float) -> Tensor { Tensor([v], shape: []) }

    /// The elements as an array (row-major).
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The single element of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item needs one element, tensor has shape \(shape)")
        return data[0]
    }

    /// The same values cut off from the tape (shares storage, no copy).
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// A fresh copy of the values, off the tape.
    public func copy() -> Tensor {
        let out = Tensor(uninitialized: shape)
        out.data.update(from: data, count: count)
        return out
    }

    /// Overwrites the values with `other`'s (same element count); no tape record, for
    /// optimizer updates, EMA and checkpoint loading.
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// Sets every element to zero in place (no tape record).
    public func zero() { data.update(repeating: 0, count: count) }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = array.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(\(shape)\(requiresGrad ? ", grad" : ""): [\(head)\(count > 8 ? ", …" : "")])"
    }
}

import Foundation
