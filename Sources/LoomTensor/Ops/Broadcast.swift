/// NumPy broadcasting: the shape two operands broadcast to, and strided row iteration over
/// broadcast operands, shared by the binary ops, `expanded(to:)` and `summed(to:)`.

/// The broadcast shape of `a` and `b`, or nil when they are incompatible.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return out
}

/// Row-major strides of `shape` seen from a tensor of rank `rank` it broadcasts to
/// (zero on broadcast axes).
func broadcastStrides(_ shape: [Int], rank: Int, outShape: [Int]) -> [Int] {
    var strides = [Int](repeating: 0, count: rank)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        let o = i + rank - shape.count
        strides[o] = (shape[i] == 1 && outShape[o] != 1) ? 0 : s
        s *= shape[i]
    }
    return strides
}

/// A broadcast iteration collapsed to as few axes as possible: the outer axes are walked
/// with counters, the last one is the contiguous (or zero-stride) inner row.
struct StridedRows {
    var shape: [Int]
    var strides: [[Int]]   // one stride array per operand, index 0 = the iterated (output) tensor

    init(shape: [Int], strides: [[Int]]) {
        var sh: [Int] = []
        var st: [[Int]] = strides.map { _ in [] }
        for d in 0..<shape.count where shape[d] != 1 {
            if let last = sh.last, (0..<strides.count).allSatisfy({ st[$0].last! == strides[$0][d] * shape[d] }) {
                sh[sh.count - 1] = last * shape[d]
                for k in 0..<strides.count { st[k][st[k].count - 1] = strides[k][d] }
            } else {
                sh.append(shape[d])
                for k in 0..<strides.count { st[k].append(strides[k][d]) }
            }
        }
        if sh.isEmpty { sh = [1]; st = st.map { _ in [0] } }
        self.shape = sh
        self.strides = st
    }

    var innerCount: Int { shape.last! }
    var rowCount: Int { shape.dropLast().reduce(1, *) }
    func innerStride(_ k: Int) -> Int { strides[k].last! }

    /// Calls `body` with the start offsets of each row in `rows` for operands 0, 1 and 2
    /// (0 for operands that do not exist), in row order. The row index is decomposed once;
    /// after that an odometer steps the offsets, so a row costs a few additions (rows are
    /// often short: 32 channels of an NHWC image).
    @inline(__always)
    func forEachRow(_ rows: Range<Int>, _ body: (Int, Int, Int) -> Void) {
        guard !rows.isEmpty else { return }
        let axes = shape.count - 1
        func operand(_ k: Int) -> [Int] { k < strides.count ? Array(strides[k].prefix(axes)) : [Int](repeating: 0, count: axes) }
        let s0 = operand(0), s1 = operand(1), s2 = operand(2)
        var index = [Int](repeating: 0, count: axes)
        var o0 = 0, o1 = 0, o2 = 0, rem = rows.lowerBound
        for d in stride(from: axes - 1, through: 0, by: -1) {
            index[d] = rem % shape[d]
            rem /= shape[d]
            o0 += index[d] * s0[d]; o1 += index[d] * s1[d]; o2 += index[d] * s2[d]
        }
        for _ in rows {
            body(o0, o1, o2)
            var d = axes - 1
            while d >= 0 {
                index[d] += 1
                o0 += s0[d]; o1 += s1[d]; o2 += s2[d]
                if index[d] < shape[d] { break }
                o0 -= s0[d] * shape[d]; o1 -= s1[d] * shape[d]; o2 -= s2[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }
}
