import Foundation
import LoomTensor

/// Kernel Inception Distance (Bińkowski et al. 2018) on any features: the unbiased estimate
/// of the squared MMD with the cubic polynomial kernel k(x, y) = (xᵀy/d + 1)³, averaged over
/// random subsets, as torch-fidelity's `kid` (100 subsets of 1000 by default).
public enum KernelInceptionDistance {
    /// The mean over subsets, their standard deviation (torch-fidelity's `kid_subset_std`,
    /// NumPy's ddof 0), the standard error of the mean (std / √subsets) and each subset's value.
    public struct Result: Equatable, Sendable {
        public var mean: Double
        public var std: Double
        public var standardError: Double
        public var subsets: [Double]
        /// The rows drawn for each subset (real, fake), so the estimate can be recomputed elsewhere.
        public var indices: [(real: [Int], fake: [Int])]

        public static func == (a: Result, b: Result) -> Bool {
            a.mean == b.mean && a.std == b.std && a.subsets == b.subsets
        }
    }

    /// The unbiased MMD² between `x` and `y` (same row count m ≥ 2): the off-diagonal means of
    /// k(x, x′) and k(y, y′) minus twice the mean of k(x, y) over all m² pairs (torch-fidelity's
    /// `mmd2` with `unbiased`).
    public static func mmd2(_ x: Matrix, _ y: Matrix) -> Double {
        let m = x.rows, d = Double(x.columns)
        func kernelSum(_ a: Matrix, _ b: Matrix, skipDiagonal: Bool) -> Double {
            let g = Matrix.product(a, b, transposeB: true)
            var s = 0.0
            for i in 0..<m {
                for j in 0..<m where !(skipDiagonal && i == j) {
                    let v = g.values[i * m + j] / d + 1
                    s += v * v * v
                }
            }
            return s
        }
        let xx = kernelSum(x, x, skipDiagonal: true), yy = kernelSum(y, y, skipDiagonal: true)
        let xy = kernelSum(x, y, skipDiagonal: false)
        let mm = Double(m)
        return (xx + yy) / (mm * (mm - 1)) - 2 * xy / (mm * mm)
    }

    /// KID between `real` and `fake` over `subsets` random subsets of `subsetSize` rows each
    /// (capped at the smaller set), each subset drawn without replacement from `seed`.
    public static func compute(real: Matrix, fake: Matrix, subsets: Int = 100, subsetSize: Int = 1000, seed: UInt64 = 0) throws -> Result {
        guard real.columns == fake.columns else {
            throw MetricError.dimensionMismatch(what: "KID: feature widths differ", first: real.columns, second: fake.columns)
        }
        let m = min(subsetSize, real.rows, fake.rows)
        guard m >= 2 else { throw MetricError.tooFew(what: "KID: rows per subset", count: m, needed: 2) }
        guard subsets >= 1 else { throw MetricError.tooFew(what: "KID: subsets", count: subsets, needed: 1) }
        var stream = RandomStream(key: splitMix64(seed ^ 0x4B49_4400))
        var values: [Double] = [], drawn: [(real: [Int], fake: [Int])] = []
        for _ in 0..<subsets {
            let r = Array(stream.permutation(real.rows).prefix(m)), f = Array(stream.permutation(fake.rows).prefix(m))
            values.append(mmd2(real.rows(r), fake.rows(f)))
            drawn.append((r, f))
        }
        let mean = values.reduce(0, +) / Double(subsets)
        let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(subsets)).squareRoot()
        return Result(mean: mean, std: std, standardError: std / Double(subsets).squareRoot(), subsets: values, indices: drawn)
    }
}
