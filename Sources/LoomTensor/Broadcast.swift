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

    /// Start offsets of row `row` for each operand.
    func offsets(ofRow row: Int) -> [Int] {
        var rem = row
        var offs = [Int](repeating: 0, count: strides.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) {
            let i = rem % shape[d]
            rem /= shape[d]
            for k in 0..<strides.count { offs[k] += i * strides[k][d] }
        }
        return offs
    }
}
