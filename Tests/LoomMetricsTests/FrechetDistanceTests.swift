import Foundation
import LoomMetrics
import LoomTensor
import Testing

/// The Fréchet distance and its matrix square roots against closed forms.
@Suite struct FrechetDistanceTests {
    /// LAPACK's eigen-decomposition of [[2, 1], [1, 2]]: eigenvalues 1 and 3, V diag(λ) Vᵀ = A.
    @Test func eigenDecompositionOfAKnownMatrix() throws {
        let a = Matrix(rows: 2, columns: 2, values: [2, 1, 1, 2])
        let e = try SymmetricEigen(a)
        #expect(abs(e.values[0] - 1) < 1e-12 && abs(e.values[1] - 3) < 1e-12)
        let back = e.map { $0 }
        for k in 0..<4 { #expect(abs(back.values[k] - a.values[k]) < 1e-12) }
        // sqrt(A)² = A.
        let r = try SymmetricEigen.squareRoot(a)
        let r2 = Matrix.product(r, r)
        for k in 0..<4 { #expect(abs(r2.values[k] - a.values[k]) < 1e-12) }
    }
}

extension FrechetDistanceTests {
    /// Two non-commuting 2×2 covariances: tr (Σ₁Σ₂)^½ = √(tr Σ₁Σ₂ + 2√det Σ₁Σ₂) for a 2×2
    /// matrix with non-negative eigenvalues ((√λ₁ + √λ₂)² = λ₁ + λ₂ + 2√(λ₁λ₂)), so
    /// FD = ‖Δμ‖² + tr Σ₁ + tr Σ₂ − 2√(tr Σ₁Σ₂ + 2√(det Σ₁ det Σ₂)).
    @Test func twoByTwoMatchesTheClosedForm() throws {
        let s1 = Matrix(rows: 2, columns: 2, values: [2.0, 0.6, 0.6, 1.0])
        let s2 = Matrix(rows: 2, columns: 2, values: [0.5, -0.3, -0.3, 3.0])
        let m1 = [1.0, -2.0], m2 = [0.5, 0.25]
        let a = try FeatureStatistics(mean: m1, covariance: s1), b = try FeatureStatistics(mean: m2, covariance: s2)
        let trProduct = 2.0 * 0.5 + 0.6 * -0.3 + 0.6 * -0.3 + 1.0 * 3.0
        let det1 = 2.0 * 1.0 - 0.36, det2 = 0.5 * 3.0 - 0.09
        let expected = 0.25 + 5.0625 + 3 + 3.5 - 2 * (trProduct + 2 * (det1 * det2).squareRoot()).squareRoot()
        let fd = try FrechetDistance.distance(a, b)
        #expect(abs(fd - expected) < 1e-12 * max(1, expected), "FD \(fd), closed form \(expected)")
        // Symmetric in its arguments, and 0 for identical statistics.
        #expect(abs(try FrechetDistance.distance(b, a) - expected) < 1e-11)
        #expect(try FrechetDistance.distance(a, a) < 1e-12)
    }

    /// The FD of a feature set with itself is 0 (a singular covariance included: 40 rows of
    /// 64-wide features have rank ≤ 39).
    @Test func aSetAgainstItselfIsZero() throws {
        var stream = RandomStream(seed: 3, purpose: .data)
        let t = Tensor.normal([40, 64], stream: &stream)
        let f = Matrix(rows: 40, columns: 64, floats: t.data)
        let s = try FeatureStatistics(features: f)
        #expect(try FrechetDistance.distance(s, s) < 1e-9)
    }

    /// Samples of two known Gaussians: the FD of their sample statistics approaches the closed
    /// form of the true parameters (here Σ₁ = L₁L₁ᵀ, Σ₂ = L₂L₂ᵀ, computed by hand with the 2×2
    /// formula above). 40 000 samples each: the estimate is within a few hundredths.
    @Test func gaussianSamplesMatchTheClosedFormWithinSamplingError() throws {
        // L1 = [[1.2, 0], [0.5, 0.8]], L2 = [[0.7, 0], [-0.4, 1.5]].
        let l1 = [1.2, 0, 0.5, 0.8], l2 = [0.7, 0, -0.4, 1.5]
        let m1 = [0.3, -0.1], m2 = [1.0, 0.4]
        func cov(_ l: [Double]) -> [Double] {
            [l[0] * l[0], l[0] * l[2], l[0] * l[2], l[2] * l[2] + l[3] * l[3]]
        }
        let s1 = cov(l1), s2 = cov(l2)
        let trProduct = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3]
        let det1 = s1[0] * s1[3] - s1[1] * s1[2], det2 = s2[0] * s2[3] - s2[1] * s2[2]
        let dm = (m1[0] - m2[0]) * (m1[0] - m2[0]) + (m1[1] - m2[1]) * (m1[1] - m2[1])
        let expected = dm + s1[0] + s1[3] + s2[0] + s2[3] - 2 * (trProduct + 2 * (det1 * det2).squareRoot()).squareRoot()
        func draw(_ l: [Double], _ m: [Double], seed: UInt64) -> Matrix {
            var stream = RandomStream(seed: seed, purpose: .data)
            let n = 40_000
            let z = Tensor.normal([n, 2], stream: &stream)
            var out = Matrix(zeros: n, 2)
            for i in 0..<n {
                let a = Double(z.data[2 * i]), b = Double(z.data[2 * i + 1])
                out[i, 0] = m[0] + l[0] * a
                out[i, 1] = m[1] + l[2] * a + l[3] * b
            }
            return out
        }
        let fd = try FrechetDistance.distance(FeatureStatistics(features: draw(l1, m1, seed: 1)), FeatureStatistics(features: draw(l2, m2, seed: 2)))
        #expect(abs(fd - expected) < 0.05, "FD of the samples \(fd), closed form \(expected)")
        #expect(expected > 1, "the two Gaussians must differ clearly: \(expected)")
    }

    /// The blur kernel sums to 1, a constant image stays constant, and an impulse in the
    /// middle becomes the outer product of the 1-D kernel (σ = 1: exp(−x²/2) for |x| ≤ 3).
    @Test func gaussianBlurOfAnImpulseIsTheKernel() {
        let k = GaussianBlur.kernel(sigma: 1)
        #expect(k.count == 7 && abs(k.reduce(0, +) - 1) < 1e-15)
        let norm = (-3...3).map { exp(-Double($0 * $0) / 2) }.reduce(0, +)
        #expect(abs(k[3] - 1 / norm) < 1e-15 && abs(k[2] - exp(-0.5) / norm) < 1e-15)
        let image = Tensor.zeros([1, 9, 9, 1])
        image.data[4 * 9 + 4] = 1
        let out = GaussianBlur.apply(image, sigma: 1)
        for y in 0..<9 { for x in 0..<9 {
            let want = abs(y - 4) <= 3 && abs(x - 4) <= 3 ? k[y - 1] * k[x - 1] : 0
            #expect(abs(Double(out.data[y * 9 + x]) - want) < 1e-7)
        } }
        let flat = GaussianBlur.apply(Tensor(repeating: 0.25, shape: [2, 5, 6, 3]), sigma: 1.5)
        #expect(flat.array.allSatisfy { abs($0 - 0.25) < 1e-6 })
    }
}
