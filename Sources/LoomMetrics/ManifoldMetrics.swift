import Foundation
import LoomTensor

/// Precision and recall of Kynkäänniemi et al. (2019) and density and coverage of Naeem et
/// al. (2020), from k-nearest-neighbour balls in feature space.
///
/// - precision: the fraction of fake samples inside at least one real ball (a real point's
///   ball reaches its k-th nearest real neighbour, itself excluded; distance ≤ radius, as the
///   authors' `improved-precision-recall-metric`);
/// - recall: the fraction of real samples inside at least one fake ball (fake radii);
/// - density: (1 / (k′·M)) Σ_fake Σ_real 1[d < real radius] with k′-NN radii (may exceed 1);
/// - coverage: the fraction of real samples whose ball holds at least one fake sample (d <
///   radius; both as the authors' `prdc`).
public enum ManifoldMetrics {
    public struct Result: Equatable, Sendable, Codable {
        public var precision: Double
        public var recall: Double
        public var density: Double
        public var coverage: Double
    }

    /// Squared distances between `a`'s rows `rows` and all of `b`'s rows, `[rows.count × b.rows]`.
    static func squaredDistances(_ a: Matrix, rows: Range<Int>, _ b: Matrix, aNorms: [Double], bNorms: [Double]) -> [Double] {
        let block = Matrix(rows: rows.count, columns: a.columns, values: Array(a.values[(rows.lowerBound * a.columns)..<(rows.upperBound * a.columns)]))
        var g = Matrix.product(block, b, transposeB: true).values
        for (r, i) in rows.enumerated() {
            for j in 0..<b.rows { g[r * b.rows + j] = max(aNorms[i] + bNorms[j] - 2 * g[r * b.rows + j], 0) }
        }
        return g
    }

    /// Rows per distance block (a block of 256 rows against 10000 is 20 MB of doubles).
    static let blockRows = 256

    /// The squared distance from each row of `x` to its k-th nearest other row of `x`
    /// (rows are their own nearest neighbour at distance 0, so the (k+1)-th smallest).
    public static func squaredRadii(_ x: Matrix, k: Int) throws -> [Double] {
        guard x.rows > k else { throw MetricError.tooFew(what: "samples for \(k)-nearest-neighbour radii", count: x.rows, needed: k + 1) }
        let norms = x.rowSquaredNorms
        var radii = [Double](repeating: 0, count: x.rows)
        let blocks = (x.rows + blockRows - 1) / blockRows
        radii.withUnsafeMutableBufferPointer { out in
            let out = out
            Parallel.forRange(blocks, grain: 1) { range in
                for b in range {
                    let rows = (b * blockRows)..<min(x.rows, (b + 1) * blockRows)
                    let d = squaredDistances(x, rows: rows, x, aNorms: norms, bNorms: norms)
                    for (r, i) in rows.enumerated() {
                        // The k+1 smallest values of the row, kept sorted ascending (self included).
                        var best = [Double](repeating: .infinity, count: k + 1)
                        for j in 0..<x.rows {
                            // The row's own entry is exactly 0 in exact arithmetic; use 0.
                            let v = j == i ? 0 : d[r * x.rows + j]
                            if v < best[k] {
                                var p = k
                                while p > 0 && best[p - 1] > v { best[p] = best[p - 1]; p -= 1 }
                                best[p] = v
                            }
                        }
                        out[i] = best[k]
                    }
                }
            }
        }
        return radii
    }

    /// The four metrics of `fake` against `real` (same feature width): precision and recall
    /// with `k`-NN balls (3, Kynkäänniemi et al.), density and coverage with `densityK` (5, Naeem et al.).
    public static func compute(real: Matrix, fake: Matrix, k: Int = 3, densityK: Int = 5) throws -> Result {
        guard real.columns == fake.columns else {
            throw MetricError.dimensionMismatch(what: "precision/recall: feature widths differ", first: real.columns, second: fake.columns)
        }
        let realRadii = try squaredRadii(real, k: k), fakeRadii = try squaredRadii(fake, k: k)
        let realRadiiD = densityK == k ? realRadii : try squaredRadii(real, k: densityK)
        let realNorms = real.rowSquaredNorms, fakeNorms = fake.rowSquaredNorms
        let n = real.rows, m = fake.rows
        // Per block of real rows: which fakes fall in some real ball, density counts per fake,
        // which reals are covered, which reals fall in some fake ball. Integer results, so the
        // split over threads cannot change them.
        let blocks = (n + blockRows - 1) / blockRows
        var precise = [[Bool]](repeating: [], count: blocks), counts = [[Int]](repeating: [], count: blocks)
        var covered = [Bool](repeating: false, count: n), recalled = [Bool](repeating: false, count: n)
        precise.withUnsafeMutableBufferPointer { pp in
            counts.withUnsafeMutableBufferPointer { cc in
                covered.withUnsafeMutableBufferPointer { cv in
                    recalled.withUnsafeMutableBufferPointer { rc in
                        let (pp, cc, cv, rc) = (pp, cc, cv, rc)
                        Parallel.forRange(blocks, grain: 1) { range in
                            for b in range {
                                let rows = (b * blockRows)..<min(n, (b + 1) * blockRows)
                                let d = squaredDistances(real, rows: rows, fake, aNorms: realNorms, bNorms: fakeNorms)
                                var p = [Bool](repeating: false, count: m), c = [Int](repeating: 0, count: m)
                                for (r, i) in rows.enumerated() {
                                    var cover = false, recall = false
                                    for j in 0..<m {
                                        let v = d[r * m + j]
                                        if v <= realRadii[i] { p[j] = true }
                                        if v < realRadiiD[i] { c[j] += 1; cover = true }
                                        if v <= fakeRadii[j] { recall = true }
                                    }
                                    cv[i] = cover
                                    rc[i] = recall
                                }
                                pp[b] = p
                                cc[b] = c
                            }
                        }
                    }
                }
            }
        }
        var anyPrecise = [Bool](repeating: false, count: m), inBalls = [Int](repeating: 0, count: m)
        for b in 0..<blocks { for j in 0..<m { anyPrecise[j] = anyPrecise[j] || precise[b][j]; inBalls[j] += counts[b][j] } }
        return Result(precision: Double(anyPrecise.filter { $0 }.count) / Double(m),
                      recall: Double(recalled.filter { $0 }.count) / Double(n),
                      density: Double(inBalls.reduce(0, +)) / (Double(densityK) * Double(m)),
                      coverage: Double(covered.filter { $0 }.count) / Double(n))
    }
}
