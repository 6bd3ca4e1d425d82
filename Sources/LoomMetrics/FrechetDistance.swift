import Foundation

/// The mean and covariance of a feature set (pytorch-fid's `mu`, `sigma`): the covariance is
/// the unbiased one, `np.cov(features, rowvar=False)`.
public struct FeatureStatistics: Equatable, Sendable {
    /// Mean feature, length d.
    public var mean: [Double]
    /// d × d covariance.
    public var covariance: Matrix

    /// Statistics given directly (e.g. read from an npz file).
    public init(mean: [Double], covariance: Matrix) throws {
        guard covariance.rows == mean.count, covariance.columns == mean.count else {
            throw MetricError.dimensionMismatch(what: "mu has \(mean.count) entries but sigma is \(covariance.rows)×\(covariance.columns); feature widths",
                                                first: mean.count, second: covariance.rows)
        }
        guard mean.allSatisfy(\.isFinite), covariance.isFinite else { throw MetricError.notFinite(what: "mu or sigma") }
        self.mean = mean
        self.covariance = covariance
    }

    /// The statistics of `features` (one row per image; at least two rows).
    public init(features f: Matrix) throws {
        guard f.rows >= 2 else { throw MetricError.tooFew(what: "feature rows for a covariance", count: f.rows, needed: 2) }
        guard f.isFinite else { throw MetricError.notFinite(what: "the features") }
        let n = f.rows, d = f.columns
        var mu = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += f.values[i * d + j] } }
        for j in 0..<d { mu[j] /= Double(n) }
        var centred = f
        for i in 0..<n { for j in 0..<d { centred.values[i * d + j] -= mu[j] } }
        // Xcᵀ Xc / (n − 1), through dgemm on the transposed centred features.
        var t = Matrix(zeros: d, n)
        for i in 0..<n { for j in 0..<d { t.values[j * n + i] = centred.values[i * d + j] } }
        var cov = Matrix.product(t, t, transposeB: true)
        for k in 0..<cov.values.count { cov.values[k] /= Double(n - 1) }
        mean = mu
        covariance = cov.symmetrized
    }

    /// Feature width d.
    public var dimension: Int { mean.count }
}

/// The Fréchet distance between two Gaussians (Heusel et al.'s FID on any features):
/// ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½.
///
/// tr (Σ₁Σ₂)^½ is computed on the symmetric form Σ₁^½ Σ₂ Σ₁^½, which has the same eigenvalues
/// as Σ₁Σ₂ but is symmetric positive semi-definite, so both square roots come from LAPACK's
/// symmetric eigen-decomposition (`dsyevd`) with no complex parts to discard (pytorch-fid uses
/// scipy's general `sqrtm` on Σ₁Σ₂ instead and drops the imaginary rounding).
public enum FrechetDistance {
    /// The distance between `a` and `b` (same feature width).
    public static func distance(_ a: FeatureStatistics, _ b: FeatureStatistics) throws -> Double {
        guard a.dimension == b.dimension else {
            throw MetricError.dimensionMismatch(what: "the two statistics have different feature widths", first: a.dimension, second: b.dimension)
        }
        var meanTerm = 0.0
        for j in 0..<a.dimension { let d = a.mean[j] - b.mean[j]; meanTerm += d * d }
        let root1 = try SymmetricEigen.squareRoot(a.covariance)
        let product = Matrix.product(Matrix.product(root1, b.covariance), root1).symmetrized
        let eigen = try SymmetricEigen(product, vectors: false)
        let traceRoot = eigen.values.reduce(0) { $0 + max($1, 0).squareRoot() }
        return max(meanTerm + a.covariance.trace + b.covariance.trace - 2 * traceRoot, 0)
    }
}
