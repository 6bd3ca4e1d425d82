import COpenBLAS
import Foundation

/// A dense row-major matrix of doubles: feature sets (one row per image), covariances.
public struct Matrix: Equatable, Sendable {
    public let rows: Int
    public let columns: Int
    public var values: [Double]

    /// A matrix of `rows × columns` values in row-major order.
    public init(rows: Int, columns: Int, values: [Double]) {
        precondition(values.count == rows * columns, "Matrix: \(values.count) values for \(rows)×\(columns)")
        self.rows = rows
        self.columns = columns
        self.values = values
    }

    /// A matrix of zeros.
    public init(zeros rows: Int, _ columns: Int) { self.init(rows: rows, columns: columns, values: [Double](repeating: 0, count: rows * columns)) }

    /// Float rows widened to double (features as a network gives them).
    public init(rows: Int, columns: Int, floats: UnsafePointer<Float>) {
        self.init(rows: rows, columns: columns, values: (0..<(rows * columns)).map { Double(floats[$0]) })
    }

    /// The identity matrix.
    public static func identity(_ n: Int) -> Matrix {
        var m = Matrix(zeros: n, n)
        for i in 0..<n { m.values[i * n + i] = 1 }
        return m
    }

    public subscript(_ i: Int, _ j: Int) -> Double {
        get { values[i * columns + j] }
        set { values[i * columns + j] = newValue }
    }

    /// Rows `indices` of this matrix, in that order.
    public func rows(_ indices: [Int]) -> Matrix {
        var out = [Double](repeating: 0, count: indices.count * columns)
        for (r, i) in indices.enumerated() {
            for j in 0..<columns { out[r * columns + j] = values[i * columns + j] }
        }
        return Matrix(rows: indices.count, columns: columns, values: out)
    }

    /// The first `n` rows.
    public func prefix(_ n: Int) -> Matrix { Matrix(rows: min(n, rows), columns: columns, values: Array(values.prefix(min(n, rows) * columns))) }

    /// The sum of the diagonal of a square matrix.
    public var trace: Double { (0..<min(rows, columns)).reduce(0) { $0 + self[$1, $1] } }

    /// Whether every value is finite.
    public var isFinite: Bool { values.allSatisfy(\.isFinite) }

    /// `a · bᵀ` (`transposeB`) or `a · b` through OpenBLAS's dgemm.
    public static func product(_ a: Matrix, _ b: Matrix, transposeB: Bool = false) -> Matrix {
        let n = transposeB ? b.rows : b.columns
        precondition(a.columns == (transposeB ? b.columns : b.rows), "Matrix.product: \(a.rows)×\(a.columns) by \(b.rows)×\(b.columns)\(transposeB ? "ᵀ" : "")")
        var out = Matrix(zeros: a.rows, n)
        guard a.rows > 0, n > 0, a.columns > 0 else { return out }
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                out.values.withUnsafeMutableBufferPointer { pc in
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                                Int32(a.rows), Int32(n), Int32(a.columns), 1, pa.baseAddress, Int32(a.columns),
                                pb.baseAddress, Int32(b.columns), 0, pc.baseAddress, Int32(n))
                }
            }
        }
        return out
    }

    /// (M + Mᵀ)/2: removes the rounding asymmetry of a product that is symmetric in exact arithmetic.
    public var symmetrized: Matrix {
        precondition(rows == columns)
        var out = self
        for i in 0..<rows { for j in 0..<i { let v = 0.5 * (self[i, j] + self[j, i]); out[i, j] = v; out[j, i] = v } }
        return out
    }

    /// Squared Euclidean norm of each row.
    public var rowSquaredNorms: [Double] {
        (0..<rows).map { i in
            var s = 0.0
            for j in 0..<columns { let v = values[i * columns + j]; s += v * v }
            return s
        }
    }
}
