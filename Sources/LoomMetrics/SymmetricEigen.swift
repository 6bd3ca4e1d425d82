import COpenBLAS
import Foundation

/// Failures of the metric computations: each a one-line message.
public enum MetricError: Error, CustomStringConvertible, Equatable {
    case lapack(routine: String, info: Int)
    case dimensionMismatch(what: String, first: Int, second: Int)
    case tooFew(what: String, count: Int, needed: Int)
    case notFinite(what: String)

    public var description: String {
        switch self {
        case let .lapack(routine, info):
            return "LAPACK \(routine) failed (info \(info)): the matrix has no eigen-decomposition in double precision"
        case let .dimensionMismatch(what, a, b): return "\(what): \(a) against \(b)"
        case let .tooFew(what, count, needed): return "\(what): \(count), need at least \(needed)"
        case let .notFinite(what): return "\(what) holds NaN or infinite values"
        }
    }
}

/// The eigen-decomposition of a real symmetric matrix through LAPACK's `dsyevd` (divide and
/// conquer), from OpenBLAS's LAPACK: A = V diag(λ) Vᵀ, eigenvalues ascending.
public struct SymmetricEigen {
    /// The eigenvalues, ascending.
    public let values: [Double]
    /// The eigenvectors as the columns of an n×n matrix.
    public let vectors: Matrix

    /// Decomposes `a` (only its lower triangle is read, as stored row-major, i.e. LAPACK's upper).
    public init(_ a: Matrix, vectors wanted: Bool = true) throws {
        precondition(a.rows == a.columns, "SymmetricEigen: \(a.rows)×\(a.columns) is not square")
        guard a.isFinite else { throw MetricError.notFinite(what: "a covariance matrix") }
        var n = Int32(a.rows)
        guard n > 0 else { values = []; vectors = a; return }
        // Row-major and symmetric: the same memory is the column-major matrix itself.
        var work = a.values
        var w = [Double](repeating: 0, count: a.rows)
        var lwork: Int32 = -1, liwork: Int32 = -1, info: Int32 = 0
        var lda = n
        var queryWork = 0.0
        var queryIWork: Int32 = 0
        let jobz: CChar = wanted ? 86 /* V */ : 78 /* N */, uplo: CChar = 85 /* U */
        var jz = jobz, ul = uplo
        dsyevd_(&jz, &ul, &n, &work, &lda, &w, &queryWork, &lwork, &queryIWork, &liwork, &info, 1, 1)
        guard info == 0 else { throw MetricError.lapack(routine: "dsyevd (workspace query)", info: Int(info)) }
        lwork = Int32(queryWork.rounded(.up))
        liwork = max(queryIWork, 1)
        var scratch = [Double](repeating: 0, count: Int(lwork))
        var iscratch = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_(&jz, &ul, &n, &work, &lda, &w, &scratch, &lwork, &iscratch, &liwork, &info, 1, 1)
        guard info == 0 else { throw MetricError.lapack(routine: "dsyevd", info: Int(info)) }
        values = w
        // Column-major eigenvectors: column k of V is work[k*n ..< (k+1)*n]; as row-major that
        // memory is Vᵀ, so transpose it back.
        let m = a.rows
        var v = Matrix(zeros: m, m)
        if wanted { for k in 0..<m { for i in 0..<m { v[i, k] = work[k * m + i] } } }
        vectors = v
    }

    /// V f(Λ) Vᵀ for a function of the eigenvalues (`f` of negative rounding noise is the
    /// caller's business: the square root clamps at 0).
    public func map(_ f: (Double) -> Double) -> Matrix {
        let n = values.count
        var scaled = vectors
        for k in 0..<n { let s = f(values[k]); for i in 0..<n { scaled[i, k] *= s } }
        return Matrix.product(scaled, vectors, transposeB: true)
    }

    /// The symmetric positive semi-definite square root of a covariance matrix: eigenvalues
    /// below zero (rounding of a singular covariance) count as zero.
    public static func squareRoot(_ a: Matrix) throws -> Matrix {
        try SymmetricEigen(a).map { max($0, 0).squareRoot() }
    }
}
