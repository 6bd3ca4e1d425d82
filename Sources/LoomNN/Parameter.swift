import LoomTensor

/// The two kinds of tensor state a module owns, as PyTorch distinguishes them.
///
/// A module declares its state with the property wrappers below; reflection (see
/// `Module.members()`) finds them through their backing storage `_name`:
///
///     final class Norm: Module {
///         @Parameter var weight: Tensor          // trained, in namedParameters() and stateDict()
///         @Parameter var bias: Tensor?           // nil: absent from both (a layer without bias)
///         @Buffer var runningMean: Tensor        // not trained, still saved in stateDict()
///     }
///
/// The key is the property name, so a module meant to load PyTorch checkpoints either uses
/// PyTorch's spelling (`@Buffer var running_mean`) or names the key explicitly:
/// `@Buffer(name: "running_mean") var runningMean = Tensor.zeros([c])`, or in `init`
/// (Swift only passes wrapper arguments with an initial value)
/// `_runningMean = Buffer(wrappedValue: Tensor.zeros([c]), name: "running_mean")`.
///
/// The wrappers are classes, so the module's member list can be cached once while the tensor
/// behind a property may still be replaced; optimizers, EMA and checkpoints hold the tensor
/// itself, so prefer updating values in place (`assign`, the `Init` functions) once those exist.

/// A tensor-holding member that a module's state dict reads and writes.
public protocol TensorSlot: AnyObject {
    /// The current tensor, or nil when the optional member is absent.
    var tensor: Tensor? { get }
    /// True for trained parameters, false for buffers.
    var isParameter: Bool { get }
    /// The state-dict key, when it differs from the property name.
    var name: String? { get }
}

/// What a `@Parameter` or `@Buffer` may hold: a tensor or an optional tensor.
public protocol TensorSlotValue {
    /// The tensor, if any.
    var slotTensor: Tensor? { get }
}

extension Tensor: TensorSlotValue {
    /// `self`.
    public var slotTensor: Tensor? { self }
}

extension Optional: TensorSlotValue where Wrapped == Tensor {
    /// The wrapped tensor.
    public var slotTensor: Tensor? { self }
}

/// A trainable tensor of a module (PyTorch `nn.Parameter`): stored as a leaf with
/// `requiresGrad` on, listed by `namedParameters()` and saved by `stateDict()`.
@propertyWrapper
public final class Parameter<Value: TensorSlotValue>: TensorSlot {
    /// The tensor (or nil for an absent optional parameter).
    public var wrappedValue: Value {
        didSet { Parameter.makeTrainable(wrappedValue) }
    }

    /// The state-dict key, when it differs from the property name.
    public let name: String?

    /// Wraps `wrappedValue`, switching its gradient on; `name` overrides the key.
    public init(wrappedValue: Value, name: String? = nil) {
        self.wrappedValue = wrappedValue
        self.name = name
        Parameter.makeTrainable(wrappedValue)
    }

    /// The current tensor.
    public var tensor: Tensor? { wrappedValue.slotTensor }
    /// Always true.
    public var isParameter: Bool { true }

    private static func makeTrainable(_ value: Value) {
        guard let t = value.slotTensor else { return }
        // The optimizer reads `.grad`, which backward only fills on leaves.
        precondition(t.gradFn == nil, "a Parameter must be a leaf tensor (use .detached() or build it under noGrad)")
        t.requiresGrad = true
    }
}

/// A saved but untrained tensor of a module (PyTorch's registered buffer, e.g. BatchNorm's
/// running statistics): saved by `stateDict()`, never given to an optimizer.
@propertyWrapper
public final class Buffer<Value: TensorSlotValue>: TensorSlot {
    /// The tensor (or nil for an absent optional buffer).
    public var wrappedValue: Value {
        didSet { wrappedValue.slotTensor?.requiresGrad = false }
    }

    /// The state-dict key, when it differs from the property name.
    public let name: String?

    /// Wraps `wrappedValue`; buffers never require gradients; `name` overrides the key.
    public init(wrappedValue: Value, name: String? = nil) {
        self.wrappedValue = wrappedValue
        self.name = name
        wrappedValue.slotTensor?.requiresGrad = false
    }

    /// The current tensor.
    public var tensor: Tensor? { wrappedValue.slotTensor }
    /// Always false.
    public var isParameter: Bool { false }
}

/// One named member of a module: a parameter or buffer slot, or a child module.
public enum ModuleMember {
    /// A `@Parameter` or `@Buffer`.
    case slot(TensorSlot)
    /// A child module whose members are named under this member's name.
    case module(Module)
}

/// Members of `module` found by reflecting its stored properties (superclasses first, each
/// in declaration order): `@Parameter`/`@Buffer` wrappers under their property name,
/// `Module` and `Module?` properties as children, `[Module]` arrays as `name.0`, `name.1`, ….
func reflectedMembers(of module: Module) -> [(String, ModuleMember)] {
    var mirrors: [Mirror] = []
    var next: Mirror? = Mirror(reflecting: module)
    while let mirror = next, mirror.subjectType != Module.self {
        mirrors.append(mirror)
        next = mirror.superclassMirror
    }
    var members: [(String, ModuleMember)] = []
    for mirror in mirrors.reversed() {
        for child in mirror.children {
            guard let label = child.label else { continue }
            let found: [(String, ModuleMember)]
            if let slot = child.value as? TensorSlot {
                // A wrapper's backing storage is `_name`.
                found = [(slot.name ?? (label.hasPrefix("_") ? String(label.dropFirst()) : label), .slot(slot))]
            } else if let module = child.value as? Module {
                found = [(label, .module(module))]
            } else if let list = child.value as? [Module] {
                found = list.enumerated().map { ("\(label).\($0.offset)", .module($0.element)) }
            } else {
                continue
            }
            precondition(found.isEmpty || !label.hasPrefix("$__lazy_storage_$_"),
                         "\(type(of: module)).\(label.dropFirst(18)): lazy properties cannot hold module state")
            members += found
        }
    }
    return members
}
