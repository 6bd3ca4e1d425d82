import CDNNL
import Foundation

/// oneDNN plumbing shared by every op that runs on it: the engine, a stream per thread,
/// memory descriptors, status checks, primitives with their execution, and a cache so that
/// each primitive is created once per shape (creation costs far more than one execution).
///
/// Primitives use a user-managed scratchpad taken from `BufferPool` at each execution: the
/// library-managed one is shared by every primitive of a thread and is not safe when a
/// primitive created on one thread runs on another, which parallel tests and data-loader
/// threads do.
enum DNNL {
    /// The CPU engine; one for the process.
    static let engine: dnnl_engine_t = {
        var e: dnnl_engine_t?
        check(dnnl_engine_create(&e, dnnl_cpu, 0), "creating the CPU engine")
        return e!
    }()

    /// Per-thread streams: oneDNN does not promise that one stream may be used from several
    /// threads at once.
    private static let streamKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { p in
            if let p { dnnl_stream_destroy(OpaquePointer(p)) }
        }
        return key
    }()

    /// The calling thread's stream (created on first use, destroyed when the thread exits).
    static var stream: dnnl_stream_t {
        if let p = pthread_getspecific(streamKey) { return OpaquePointer(p) }
        var s: dnnl_stream_t?
        check(dnnl_stream_create(&s, engine, UInt32(dnnl_stream_default_flags.rawValue)), "creating a stream")
        pthread_setspecific(streamKey, UnsafeRawPointer(s!))
        return s!
    }

    /// Stops with a message naming the failed call and oneDNN's status.
    static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) {
        guard status != dnnl_success else { return }
        let reason: String
        switch status {
        case dnnl_out_of_memory: reason = "out of memory"
        case dnnl_invalid_arguments: reason = "invalid arguments"
        case dnnl_unimplemented: reason = "no implementation for these shapes and parameters"
        case dnnl_runtime_error: reason = "runtime error"
        case dnnl_not_required: reason = "not required"
        default: reason = "status \(status.rawValue)"
        }
        stopWithOneLine("oneDNN: \(what()) failed: \(reason)")
    }

    /// A float32 memory descriptor; `dims` in oneDNN's logical order (N, C, H, W for
    /// activations, O, I, kh, kw for weights) whatever the physical layout `tag` gives.
    static func memoryDesc(_ dims: [Int], _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let d = dims.map { dnnl_dim_t($0) }
        check(dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, dnnl_f32, tag),
              "describing memory \(dims) with tag \(tag.rawValue)")
        return md
    }

    /// A primitive attribute asking for a user-managed scratchpad (see the type comment).
    static func makeAttr() -> dnnl_primitive_attr_t {
        var attr: dnnl_primitive_attr_t?
        check(dnnl_primitive_attr_create(&attr), "creating a primitive attribute")
        check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "setting the scratchpad mode")
        return attr!
    }

    /// Whether this CPU has oneDNN's Winograd convolution (AVX-512 only), found by asking
    /// for one small forward primitive once.
    static let hasWinograd: Bool = {
        var src = memoryDesc([1, 16, 8, 8], dnnl_nChw16c), dst = memoryDesc([1, 16, 8, 8], dnnl_nChw16c)
        var weights = memoryDesc([16, 16, 3, 3], dnnl_format_tag_any)
        let one: [dnnl_dim_t] = [1, 1]
        var cd = dnnl_convolution_desc_t()
        guard dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_winograd, &src, &weights,
                                                 nil, &dst, one, one, one) == dnnl_success else { return false }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &cd, nil, engine, nil) == dnnl_success, let pd else { return false }
        dnnl_primitive_desc_destroy(pd)
        return true
    }()

    private typealias GetThreads = @convention(c) () -> Int32
    private typealias SetThreads = @convention(c) (Int32) -> Void
    // oneDNN runs on libgomp, which libdnnl loads; look it up instead of linking it.
    private static let ompGetMaxThreads = dlsym(dlopen(nil, RTLD_NOW), "omp_get_max_threads")
        .map { unsafeBitCast($0, to: GetThreads.self) }
    private static let ompSetNumThreads = dlsym(dlopen(nil, RTLD_NOW), "omp_set_num_threads")
        .map { unsafeBitCast($0, to: SetThreads.self) }

    /// Runs `body` with the calling thread's OpenMP thread count set to `n`, restored after.
    /// oneDNN fixes a primitive's work split from it at creation and reads it again in some
    /// kernels and reorders at execution; each thread has its own count.
    static func withThreads<R>(_ n: Int, _ body: () -> R) -> R {
        guard let set = ompSetNumThreads, let get = ompGetMaxThreads else { return body() }
        let saved = get()
        set(Int32(n))
        defer { set(Int32(saved)) }
        return body()
    }

    private static var cache: [AnyHashable: AnyObject] = [:]
    private static var cacheLock: pthread_mutex_t = {
        var m = pthread_mutex_t()
        pthread_mutex_init(&m, nil)
        return m
    }()

    /// The cached object for `key`, made by `create` on first request. Creation runs under
    /// the lock, so concurrent first calls for one shape create it once.
    static func cached<T: AnyObject>(_ key: AnyHashable, _ create: () -> T) -> T {
        pthread_mutex_lock(&cacheLock)
        defer { pthread_mutex_unlock(&cacheLock) }
        if let hit = cache[key] { return hit as! T }
        let made = create()
        cache[key] = made
        return made
    }
}

/// One created oneDNN primitive with its descriptor, executable from any thread.
final class DNNLPrimitive {
    let desc: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t
    /// Bytes of scratchpad each execution needs (0 when none).
    let scratchpadBytes: Int

    /// Takes ownership of `desc` and creates the primitive from it.
    init(desc: dnnl_primitive_desc_t, what: String) {
        self.desc = desc
        var p: dnnl_primitive_t?
        DNNL.check(dnnl_primitive_create(&p, desc), "creating the primitive for \(what)")
        primitive = p!
        scratchpadBytes = Int(dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(desc, dnnl_query_scratchpad_md, 0)))
    }

    /// A reorder between two layouts of the same tensor.
    convenience init(reorderFrom src: UnsafePointer<dnnl_memory_desc_t>, to dst: UnsafePointer<dnnl_memory_desc_t>) {
        let attr = DNNL.makeAttr()
        defer { dnnl_primitive_attr_destroy(attr) }
        var pd: dnnl_primitive_desc_t?
        DNNL.check(dnnl_reorder_primitive_desc_create(&pd, src, DNNL.engine, dst, DNNL.engine, attr),
                   "creating a reorder")
        self.init(desc: pd!, what: "a reorder")
    }

    deinit {
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(desc)
    }

    /// The memory descriptor the primitive expects for execution argument `arg`.
    func md(_ arg: Int32) -> UnsafePointer<dnnl_memory_desc_t> {
        dnnl_primitive_desc_query_md(desc, dnnl_query_exec_arg_md, arg)!
    }

    /// Bytes of the buffer argument `arg` needs (blocked layouts may pad).
    func bytes(_ arg: Int32) -> Int { Int(dnnl_memory_desc_get_size(md(arg))) }

    /// The implementation oneDNN chose, e.g. "brg:avx512_core" (for benchmarks and logs).
    var implementation: String {
        var name: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(desc, dnnl_query_impl_info_str, 0, &name) == dnnl_success,
              let name else { return "?" }
        return String(cString: name)
    }

    /// Runs the primitive on raw buffers, each described by `md(arg)`, synchronously.
    func execute(_ args: [(Int32, UnsafeMutableRawPointer)]) {
        let scratch = scratchpadBytes > 0 ? Storage(count: (scratchpadBytes + 3) / 4) : nil
        var all = args
        if let scratch { all.append((loom_dnnl_arg_scratchpad(), UnsafeMutableRawPointer(scratch.data))) }
        var execArgs: [dnnl_exec_arg_t] = []
        execArgs.reserveCapacity(all.count)
        defer { for a in execArgs { dnnl_memory_destroy(a.memory) } }
        for (arg, ptr) in all {
            var mem: dnnl_memory_t?
            DNNL.check(dnnl_memory_create(&mem, md(arg), DNNL.engine, ptr), "wrapping argument \(arg) in a memory object")
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: mem))
        }
        let stream = DNNL.stream
        // One thread: Loom's threads call this concurrently, each on its share of the work,
        // and a thread's OpenMP default would otherwise start a team of all cores.
        DNNL.withThreads(1) {
            DNNL.check(dnnl_primitive_execute(primitive, stream, Int32(execArgs.count), execArgs), "executing \(implementation)")
            DNNL.check(dnnl_stream_wait(stream), "waiting for the stream")
        }
        withExtendedLifetime(scratch) {}
    }
}
