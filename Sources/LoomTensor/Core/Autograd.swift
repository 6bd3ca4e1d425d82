import Foundation

/// Reverse-mode automatic differentiation on a tape.
///
/// Every op that sees an input requiring gradients attaches a `Node` to its output. A node's
/// backward function is written with differentiable tensor ops, so running it with the tape
/// on (`createGraph`) records the gradient computation itself: that gives second-order
/// gradients (WGAN-GP, R1) with no extra code per op. Ops with fused backward kernels use
/// them only when the tape is off and fall back to composite ops otherwise.

/// Computes the input gradients of one recorded op from its output gradient.
/// `needs[i]` says whether input `i`'s gradient is wanted; return nil where it is not.
public typealias BackwardFunction = (_ gradOutput: Tensor, _ needs: [Bool]) -> [Tensor?]

/// One recorded operation: its inputs and how to push a gradient back into them.
public final class Node {
    /// The op's name, for debugging and error messages.
    public let name: String
    var inputs: [Tensor?]
    var backward: BackwardFunction?
    /// For a crop: where its output sits in its input. First-order backward then adds the
    /// gradient into that window of the input's gradient, instead of a zero-padded copy per
    /// crop summed afterwards (DiT chunks one tensor into six).
    var window: (start: [Int], inputShape: [Int])?

    init(name: String, inputs: [Tensor?], backward: @escaping BackwardFunction) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }

    /// Frees the saved tensors once backward no longer needs them.
    func release() {
        inputs = []
        backward = nil
    }
}

/// Whether ops record onto the tape.
public enum GradMode {
    /// False inside `noGrad` (inference, EMA, optimizer updates). Per thread, so a data
    /// loader thread or a parallel test never switches another thread's tape off.
    public internal(set) static var isEnabled: Bool {
        get { pthread_getspecific(disabledKey) == nil }
        set { pthread_setspecific(disabledKey, newValue ? nil : UnsafeRawPointer(bitPattern: 1)) }
    }

    private static let disabledKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body` with recording switched to `enabled`, restoring the previous mode after.
    @discardableResult
    public static func with<R>(enabled: Bool, _ body: () throws -> R) rethrows -> R {
        let saved = isEnabled
        isEnabled = enabled
        defer { isEnabled = saved }
        return try body()
    }
}

/// Runs `body` without recording any op (inference, EMA and optimizer updates).
@discardableResult
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.with(enabled: false, body)
}

extension Tensor {
    /// Attaches a tape node to `self` (an op's fresh output) when recording is on and any
    /// input requires gradients; returns `self` for chaining.
    @discardableResult
    public func recorded(_ name: String, _ inputs: [Tensor], _ backward: @escaping BackwardFunction) -> Tensor {
        if OpProfiler.isEnabled { OpProfiler.mark(name) }
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        gradFn = Node(name: name, inputs: inputs.map { $0.requiresGrad ? $0 : nil }, backward: backward)
        return self
    }

    /// Accumulates d(self)/d(leaf) into every leaf's `.grad`; `self` must hold one element
    /// unless `gradient` is given. The tape is freed afterwards unless `retainGraph`.
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false, createGraph: Bool = false) {
        // Leaves are reached after every op that feeds them, so each gradient is final
        // when handed over here; accumulate at once and let hooks start their work.
        Autograd.run(root: self, seed: gradient, targets: nil, createGraph: createGraph,
                     retainGraph: retainGraph || createGraph) { leaf, g in
            leaf.accumulateGrad(g, createGraph: createGraph)
            leaf.onGradientReady?(leaf)
        }
    }

    /// Adds `g` to this leaf's `.grad` as `backward` does (without calling `onGradientReady`):
    /// into its `gradientView` when it has one, else into `.grad`, or a copy of `g` when
    /// there is none. With `createGraph` the sum is recorded on the tape.
    public func accumulateGrad(_ g: Tensor, createGraph: Bool = false) {
        precondition(g.count == count, "accumulateGrad: gradient \(g.shape) for \(shape)")
        if let view = gradientView, view.accumulate(g, into: self, createGraph: createGraph) { return }
        if let old = grad {
            grad = createGraph ? old + g : Autograd.addInPlace(old, g)
        } else {
            // Own the buffer: g may be shared with another leaf or with the caller.
            grad = createGraph ? g : g.copy()
        }
    }
}

/// Gradients of `output` with respect to `inputs`, as tensors (zeros where unreachable).
/// With `createGraph` the results are themselves on the tape and can be differentiated
/// again (gradient penalties); the tape is then kept.
public func grad(of output: Tensor, wrt inputs: [Tensor], gradOutput: Tensor? = nil,
                 createGraph: Bool = false, retainGraph: Bool? = nil) -> [Tensor] {
    var byID: [ObjectIdentifier: Tensor] = [:]
    Autograd.run(root: output, seed: gradOutput, targets: inputs, createGraph: createGraph,
                 retainGraph: retainGraph ?? createGraph) { t, g in byID[ObjectIdentifier(t)] = g }
    return inputs.map { byID[ObjectIdentifier($0)] ?? Tensor.zeros($0.shape) }
}

enum Autograd {
    /// Tensors in an order where every op's output comes after its inputs.
    static func topologicalOrder(from root: Tensor) -> [Tensor] {
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (t, next) = stack.popLast() {
            let inputs = t.gradFn?.inputs ?? []
            if next < inputs.count {
                stack.append((t, next + 1))
                if let child = inputs[next], child.requiresGrad, visited.insert(ObjectIdentifier(child)).inserted {
                    stack.append((child, 0))
                }
            } else {
                order.append(t)
            }
        }
        return order
    }

    /// The backward pass: hands each leaf's (or each target's) final gradient to `deliver`.
    static func run(root: Tensor, seed: Tensor?, targets: [Tensor]?, createGraph: Bool,
                    retainGraph: Bool, deliver: (Tensor, Tensor) -> Void) {
        precondition(root.requiresGrad, "backward: the tensor does not require gradients (was it made under noGrad?)")
        if seed == nil {
            precondition(root.count == 1, "backward: implicit gradient needs a one-element output, got \(root.shape)")
        }
        let order = topologicalOrder(from: root)
        let targetIDs = targets.map { Set($0.map(ObjectIdentifier.init)) }
        // Which tensors lead to a wanted gradient (all requiring grad when no targets).
        var relevant = Set<ObjectIdentifier>()
        for t in order {
            let id = ObjectIdentifier(t)
            if let targetIDs {
                if targetIDs.contains(id) || (t.gradFn?.inputs.contains { $0.map { relevant.contains(ObjectIdentifier($0)) } ?? false } ?? false) {
                    relevant.insert(id)
                }
            } else if t.requiresGrad {
                relevant.insert(id)
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [:]
        var owned = Set<ObjectIdentifier>()  // gradients whose buffer we may add into in place
        grads[ObjectIdentifier(root)] = seed ?? Tensor(repeating: 1, shape: root.shape)

        GradMode.with(enabled: createGraph) {
            for t in order.reversed() {
                let id = ObjectIdentifier(t)
                guard let g = grads[id] else { continue }
                let isTarget = targetIDs?.contains(id) ?? (t.gradFn == nil)
                if isTarget {
                    deliver(t, g)
                    if OpProfiler.isEnabled { OpProfiler.mark("backward: leaf gradients and hooks") }
                }
                guard let node = t.gradFn, let backward = node.backward else { continue }
                if !isTarget { grads[id] = nil }
                let needs = node.inputs.map { $0.map { relevant.contains(ObjectIdentifier($0)) } ?? false }
                if !createGraph, let window = node.window, needs == [true], let input = node.inputs[0] {
                    OpProfiler.timed("\(node.name) backward") {
                        let iid = ObjectIdentifier(input)
                        var full = grads[iid]
                        if full == nil || !owned.contains(iid) {
                            full = full?.copy() ?? Tensor.zeros(window.inputShape)
                            grads[iid] = full
                            owned.insert(iid)
                        }
                        copyWindow(small: g.data, smallShape: g.shape, big: full!.data, bigShape: window.inputShape,
                                   start: window.start, mode: .addIntoBig)
                    }
                } else if needs.contains(true) {
                    let inputGrads = OpProfiler.timed("\(node.name) backward") { backward(g, needs) }
                    for (i, input) in node.inputs.enumerated() {
                        guard needs[i], let input, let gi = inputGrads[i] else { continue }
                        precondition(gi.shape == input.shape,
                                     "\(node.name) backward gave gradient \(gi.shape) for input \(input.shape)")
                        let iid = ObjectIdentifier(input)
                        if let old = grads[iid] {
                            if createGraph {
                                grads[iid] = old + gi
                            } else if owned.contains(iid) {
                                addInPlace(old, gi)
                            } else {
                                grads[iid] = broadcastBinary(old, gi, AddKernel.self)  // a fresh buffer: ours
                                owned.insert(iid)
                            }
                        } else {
                            grads[iid] = gi
                        }
                    }
                }
                if !retainGraph { node.release() }
                if OpProfiler.isEnabled { OpProfiler.mark("backward: gradient sums and tape") }
            }
        }
    }

    /// `a += b` on raw buffers (same shape), off the tape; returns `a`.
    @discardableResult
    static func addInPlace(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.count == b.count)
        let pa = a.data, pb = b.data
        Parallel.forRange(a.count, grain: 1 << 15) { r in
            for i in r { pa[i] += pb[i] }
        }
        return a
    }
}
