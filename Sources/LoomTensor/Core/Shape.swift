/// Layout ops: permute and transpose, slice, pad, concat, split, chunk, repeat, and the row
/// gather behind embeddings. Tensors are always contiguous, so every op here copies; each
/// backward is another op of this file (permute ↔ inverse permute, crop ↔ pad,
/// gather ↔ scatter-add), which keeps grad-of-grad working with no extra code.

/// Axis arithmetic shared by the shape, softmax and matmul ops.
enum AxisMath {
    /// `axis` as an index in `0..<rank`; negative axes count from the end (-1 = last).
    @inline(__always)
    static func resolve(_ axis: Int, rank: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < rank, "axis \(axis) is out of range for rank \(rank)")
        return a
    }

    /// Row-major strides of `shape`.
    static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) { s[d] = acc; acc *= shape[d] }
        return s
    }
}

/// Walks a multi-index over `extents` in row-major order, keeping up to two linear offsets
/// (one per operand) in step; the odometer behind every strided copy here.
struct OffsetOdometer {
    let extents: [Int]
    let strides0: [Int]
    let strides1: [Int]
    var index: [Int]
    var offset0 = 0
    var offset1 = 0

    /// Starts at the `linear`-th position of the row-major walk.
    init(extents: [Int], strides0: [Int], strides1: [Int], start linear: Int) {
        self.extents = extents
        self.strides0 = strides0
        self.strides1 = strides1
        index = [Int](repeating: 0, count: extents.count)
        var rem = linear
        for d in stride(from: extents.count - 1, through: 0, by: -1) {
            index[d] = rem % extents[d]
            rem /= extents[d]
            offset0 += index[d] * strides0[d]
            offset1 += index[d] * strides1[d]
        }
    }

    /// Advances by one position (carrying like an odometer).
    @inline(__always)
    mutating func next() {
        var d = extents.count - 1
        while d >= 0 {
            index[d] += 1
            offset0 += strides0[d]
            offset1 += strides1[d]
            if index[d] < extents[d] { return }
            offset0 -= strides0[d] * extents[d]
            offset1 -= strides1[d] * extents[d]
            index[d] = 0
            d -= 1
        }
    }
}

// MARK: - Permute

/// Copies `src` (shape `shape`) permuted by `perm` into `dst`: axes that stay adjacent are
/// merged first, then either contiguous inner runs are copied whole (e.g. [B,T,H,D] →
/// [B,H,T,D]) or, when the innermost axis moves, 32×32 tiles are transposed (NHWC ↔ NCHW).
func permuteCopy(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, shape: [Int], perm: [Int]) {
    let count = shape.reduce(1, *)
    if count == 0 { return }
    let inStrides = AxisMath.strides(shape)
    // Output axes (in output order) with their input strides, size-1 axes dropped and
    // neighbours that are also neighbours in the input merged.
    var ext: [Int] = [], ist: [Int] = []
    for d in perm where shape[d] != 1 {
        if let last = ist.last, last == inStrides[d] * shape[d] {
            ext[ext.count - 1] *= shape[d]
            ist[ist.count - 1] = inStrides[d]
        } else {
            ext.append(shape[d])
            ist.append(inStrides[d])
        }
    }
    if ext.count <= 1 { dst.update(from: src, count: count); return }
    let r = ext.count
    let ost = AxisMath.strides(ext)
    if ist[r - 1] == 1 {
        // The innermost axis stays innermost: copy runs.
        let run = ext[r - 1], rows = count / run
        let oe = Array(ext.dropLast()), oi = Array(ist.dropLast()), oo = Array(ost.dropLast())
        Parallel.forRange(rows, grain: Swift.max(1, (1 << 14) / run)) { range in
            var w = OffsetOdometer(extents: oe, strides0: oi, strides1: oo, start: range.lowerBound)
            for _ in range {
                (dst + w.offset1).update(from: src + w.offset0, count: run)
                w.next()
            }
        }
        return
    }
    // The input's innermost axis (stride 1) is output axis q; the output's innermost axis
    // has input stride sl. Transpose (q, last) in 16×16 tiles; the other axes are walked
    // outside. A tile is read as 16 runs of 16 floats along q and written as 16 runs along
    // the last axis (whole tiles in registers, `transposeTile16`; partial ones through a
    // staging tile): every cache line is used whole when it is touched, so power-of-two
    // strides (which map a tile's lines onto one L1 set) cost nothing.
    let q = ist.firstIndex(of: 1)!
    let nq = ext[q], nl = ext[r - 1], sl = ist[r - 1], osq = ost[q]
    var oe: [Int] = [], oi: [Int] = [], oo: [Int] = []
    for d in 0..<(r - 1) where d != q { oe.append(ext[d]); oi.append(ist[d]); oo.append(ost[d]) }
    let tile = 16
    let qTiles = (nq + tile - 1) / tile
    let outer = oe.reduce(1, *)
    Parallel.forRange(outer * qTiles, grain: Swift.max(1, (1 << 14) / (tile * nl))) { range in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: tile * tile) { staging in
            let st = staging.baseAddress!
            var w = OffsetOdometer(extents: oe, strides0: oi, strides1: oo, start: range.lowerBound / qTiles)
            for item in range {
                let t = item % qTiles
                if t == 0 && item != range.lowerBound { w.next() }
                let q0 = t * tile, nqt = Swift.min(tile, nq - q0)
                let s = src + w.offset0 + q0, o = dst + w.offset1 + q0 * osq
                var l0 = 0
                while l0 < nl {
                    let nlt = Swift.min(tile, nl - l0)
                    if nlt == tile && nqt == tile {
                        transposeTile16(s + l0 * sl, sl, o + l0, osq)
                        l0 += tile
                        continue
                    }
                    // staging[iq][il] = src[l0 + il][q0 + iq]
                    for il in 0..<nlt {
                        let run = s + (l0 + il) * sl
                        for iq in 0..<nqt { st[iq * tile + il] = run[iq] }
                    }
                    for iq in 0..<nqt { (o + iq * osq + l0).update(from: st + iq * tile, count: nlt) }
                    l0 += nlt
                }
            }
        }
    }
}

/// to[j·toStride + i] = from[i·fromStride + j] for a 16×16 tile, in registers: four rounds
/// of pairing rows that differ in bit r, the even lanes of both into one row and the odd
/// lanes into the other, move the row index into the lanes one bit at a time.
@inline(__always)
func transposeTile16(_ from: UnsafePointer<Float>, _ fromStride: Int, _ to: UnsafeMutablePointer<Float>, _ toStride: Int) {
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 16) { rows in
        let r = rows.baseAddress!
        for i in 0..<16 { r[i] = UnsafeRawPointer(from + i * fromStride).loadUnaligned(as: SIMD16<Float>.self) }
        for bit in 0..<4 {
            let step = 1 << bit
            for p in 0..<16 where p & step == 0 {
                let a = r[p], b = r[p + step]
                r[p] = SIMD16(lowHalf: a.evenHalf, highHalf: b.evenHalf)
                r[p + step] = SIMD16(lowHalf: a.oddHalf, highHalf: b.oddHalf)
            }
        }
        for j in 0..<16 { UnsafeMutableRawPointer(to + j * toStride).storeBytes(of: r[j], as: SIMD16<Float>.self) }
    }
}

extension Tensor {
    /// The axes reordered: result axis i is input axis `axes[i]` (negative axes allowed).
    public func permuted(_ axes: [Int]) -> Tensor {
        let perm = axes.map { AxisMath.resolve($0, rank: rank) }
        precondition(perm.count == rank && Set(perm).count == rank, "permuted: \(axes) is not a permutation of \(rank) axes")
        if perm == Array(0..<rank) { return self }
        let out = Tensor(uninitialized: perm.map { shape[$0] })
        permuteCopy(data, out.data, shape: shape, perm: perm)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, p) in perm.enumerated() { inverse[p] = i }
        return out.recorded("permute", [self]) { g, _ in [g.permuted(inverse)] }
    }

    /// Axes `a` and `b` swapped.
    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var perm = Array(0..<rank)
        perm.swapAt(AxisMath.resolve(a, rank: rank), AxisMath.resolve(b, rank: rank))
        return permuted(perm)
    }
}

// MARK: - Window copies: slice, pad

/// What `copyWindow` does between the small tensor and the big one's window.
enum WindowCopy { case crop, pad, addIntoBig }

/// Copies between a small tensor and the window of a big one that starts at `start` (one
/// offset per axis): into the big one (pad) or out of it (crop). Rows are as long as the
/// trailing axes where the two shapes agree allow.
func copyWindow(small: UnsafeMutablePointer<Float>, smallShape: [Int], big: UnsafeMutablePointer<Float>,
                bigShape: [Int], start: [Int], mode: WindowCopy) {
    let count = smallShape.reduce(1, *)
    if count == 0 { return }
    @inline(__always) func move(_ s: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ n: Int) {
        switch mode {
        case .crop: s.update(from: b, count: n)
        case .pad: b.update(from: s, count: n)
        case .addIntoBig: for i in 0..<n { b[i] += s[i] }
        }
    }
    guard let p = (0..<smallShape.count).last(where: { smallShape[$0] != bigShape[$0] }) else {
        move(small, big, count)
        return
    }
    let bigStrides = AxisMath.strides(bigShape)
    let run = smallShape[p...].reduce(1, *), rows = count / run
    var base = 0
    for d in 0...p { base += start[d] * bigStrides[d] }
    let oe = Array(smallShape[..<p]), ob = Array(bigStrides[..<p]), os = AxisMath.strides(oe)
    Parallel.forRange(rows, grain: Swift.max(1, (1 << 14) / run)) { range in
        var w = OffsetOdometer(extents: oe, strides0: os, strides1: ob, start: range.lowerBound)
        for _ in range {
            move(small + w.offset0 * run, big + base + w.offset1, run)
            w.next()
        }
    }
}

extension Tensor {
    /// The window of `shape` starting at `start` (the adjoint of `embedded`).
    func cropped(start: [Int], shape window: [Int]) -> Tensor {
        precondition(start.count == rank && window.count == rank, "cropped: rank mismatch")
        for d in 0..<rank {
            precondition(start[d] >= 0 && window[d] >= 0 && start[d] + window[d] <= shape[d],
                         "cropped: window \(start)+\(window) exceeds \(shape)")
        }
        if window == shape { return self }
        let out = Tensor(uninitialized: window)
        copyWindow(small: out.data, smallShape: window, big: data, bigShape: shape, start: start, mode: .crop)
        let bigShape = shape
        out.recorded("crop", [self]) { g, _ in [g.embedded(in: bigShape, at: start, value: 0)] }
        out.gradFn?.window = (start, bigShape)
        return out
    }

    /// `self` placed at `start` inside a tensor of `bigShape` filled with `value`.
    func embedded(in bigShape: [Int], at start: [Int], value: Float) -> Tensor {
        precondition(start.count == rank && bigShape.count == rank, "embedded: rank mismatch")
        if bigShape == shape { return self }
        let out = Tensor(repeating: value, shape: bigShape)
        copyWindow(small: data, smallShape: shape, big: out.data, bigShape: bigShape, start: start, mode: .pad)
        let window = shape
        return out.recorded("pad", [self]) { g, _ in [g.cropped(start: start, shape: window)] }
    }

    /// Indices `range` along `axis` (negative axes allowed).
    public func sliced(axis: Int, _ range: Range<Int>) -> Tensor {
        let a = AxisMath.resolve(axis, rank: rank)
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[a],
                     "sliced: \(range) is out of bounds for axis \(axis) of \(shape)")
        var start = [Int](repeating: 0, count: rank), window = shape
        start[a] = range.lowerBound
        window[a] = range.count
        return cropped(start: start, shape: window)
    }

    /// `self` with `pads[d].0` elements of `value` before and `pads[d].1` after along every
    /// axis d (one pair per axis, non-negative).
    public func padded(_ pads: [(Int, Int)], value: Float = 0) -> Tensor {
        precondition(pads.count == rank, "padded: \(pads.count) pad pairs for rank \(rank)")
        precondition(pads.allSatisfy { $0.0 >= 0 && $0.1 >= 0 }, "padded: negative padding")
        let bigShape = (0..<rank).map { shape[$0] + pads[$0].0 + pads[$0].1 }
        return embedded(in: bigShape, at: pads.map(\.0), value: value)
    }

    /// Consecutive pieces of `sizes[i]` elements along `axis` (the sizes add up to its extent).
    public func split(sizes: [Int], axis: Int) -> [Tensor] {
        let a = AxisMath.resolve(axis, rank: rank)
        precondition(sizes.allSatisfy { $0 >= 0 } && sizes.reduce(0, +) == shape[a],
                     "split: sizes \(sizes) do not add up to \(shape[a]) along axis \(axis)")
        var lo = 0
        return sizes.map { n in
            defer { lo += n }
            return sliced(axis: a, lo..<(lo + n))
        }
    }

    /// At most `n` pieces along `axis`, all of ⌈extent / n⌉ elements but a shorter last one
    /// (like torch.chunk, so fewer than `n` pieces may come back).
    public func chunked(_ n: Int, axis: Int) -> [Tensor] {
        precondition(n > 0, "chunked: n must be positive")
        let a = AxisMath.resolve(axis, rank: rank)
        let size = Swift.max(1, (shape[a] + n - 1) / n)
        var sizes: [Int] = []
        var left = shape[a]
        while left > 0 { sizes.append(Swift.min(size, left)); left -= size }
        if sizes.isEmpty { sizes = [0] }
        return split(sizes: sizes, axis: a)
    }

    /// Tiled `times[d]` times along every axis, like torch.Tensor.repeat (extra leading
    /// entries of `times` add new leading axes).
    public func repeated(_ times: [Int]) -> Tensor {
        precondition(times.count >= rank && times.allSatisfy { $0 >= 0 },
                     "repeated: \(times) needs one non-negative count per axis of \(shape)")
        let shape = [Int](repeating: 1, count: times.count - rank) + self.shape
        // Viewed as [1, s0, 1, s1, …] broadcast to [t0, s0, t1, s1, …]: expand's backward then
        // sums the copies, which is the adjoint of tiling.
        var view: [Int] = [], tiled: [Int] = []
        for (t, s) in zip(times, shape) { view += [1, s]; tiled += [t, s] }
        return reshaped(view).expanded(to: tiled).reshaped(zip(times, shape).map { $0 * $1 })
    }

    /// Concatenation along `axis`; all parts agree on the other axes.
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concat: no parts")
        let first = parts[0]
        let a = AxisMath.resolve(axis, rank: first.rank)
        for p in parts {
            precondition(p.rank == first.rank && (0..<p.rank).allSatisfy { $0 == a || p.shape[$0] == first.shape[$0] },
                         "concat: \(p.shape) does not match \(first.shape) off axis \(axis)")
        }
        if parts.count == 1 { return first }
        var shape = first.shape
        shape[a] = parts.reduce(0) { $0 + $1.shape[a] }
        let out = Tensor(uninitialized: shape)
        let inner = shape[(a + 1)...].reduce(1, *), outer = shape[..<a].reduce(1, *)
        let runs = parts.map { $0.shape[a] * inner }, rowLength = shape[a] * inner
        let pointers = parts.map(\.data), po = out.data
        Parallel.forRange(outer, grain: Swift.max(1, (1 << 14) / Swift.max(1, rowLength))) { range in
            for o in range {
                var dst = po + o * rowLength
                for (p, run) in zip(pointers, runs) {
                    dst.update(from: p + o * run, count: run)
                    dst += run
                }
            }
        }
        let sizes = parts.map { $0.shape[a] }
        return out.recorded("concat", parts) { g, needs in
            var lo = 0
            return sizes.enumerated().map { i, n in
                defer { lo += n }
                return needs[i] ? g.sliced(axis: a, lo..<(lo + n)) : nil
            }
        }
    }
}

// MARK: - Row gather (embedding lookup) and its adjoint

extension Tensor {
    /// Rows `indices` of `self` ([V, D…] → [indices.count, D…]): the embedding lookup.
    public func gatherRows(_ indices: [Int]) -> Tensor {
        precondition(rank >= 1, "gatherRows needs at least one axis")
        let rows = shape[0], rowSize = shape.dropFirst().reduce(1, *)
        precondition(indices.allSatisfy { $0 >= 0 && $0 < rows }, "gatherRows: index out of 0..<\(rows)")
        let out = Tensor(uninitialized: [indices.count] + shape.dropFirst())
        let px = data, po = out.data
        indices.withUnsafeBufferPointer { idx in
            Parallel.forRange(idx.count, grain: Swift.max(1, (1 << 14) / Swift.max(1, rowSize))) { range in
                for i in range { (po + i * rowSize).update(from: px + idx[i] * rowSize, count: rowSize) }
            }
        }
        return out.recorded("gather_rows", [self]) { g, _ in [g.scatterAddedRows(indices, rows: rows)] }
    }

    /// Zeros of [rows, D…] with row i of `self` added into row `indices[i]` (repeated
    /// indices accumulate): the adjoint of `gatherRows`.
    func scatterAddedRows(_ indices: [Int], rows: Int) -> Tensor {
        precondition(shape.first == indices.count, "scatterAddedRows: \(shape) for \(indices.count) indices")
        let rowSize = shape.dropFirst().reduce(1, *)
        let out = Tensor.zeros([rows] + shape.dropFirst())
        let pg = data, po = out.data
        indices.withUnsafeBufferPointer { idx in
            // Split over columns, never over indices: every element adds up in index order,
            // whatever the thread count.
            Parallel.forRange(rowSize, grain: Swift.max(16, (1 << 14) / Swift.max(1, idx.count))) { cols in
                for (i, r) in idx.enumerated() {
                    let s = pg + i * rowSize, o = po + r * rowSize
                    for c in cols { o[c] += s[c] }
                }
            }
        }
        return out.recorded("scatter_add_rows", [self]) { g, _ in [g.gatherRows(indices)] }
    }
}
