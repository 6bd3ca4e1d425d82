import LoomTensor
import LoomDiffusion

/// The inputs reference.py uses, built from the same integer formulas (exact in float32).
enum Fixture {
    static let shape = [2, 2, 2, 3]

    /// A tensor of `shape` whose element i is f(i).
    static func tensor(_ shape: [Int] = Fixture.shape, _ f: (Int) -> Float) -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor((0..<count).map(f), shape: shape)
    }

    static var x0: Tensor { tensor { Float((($0 * 7) % 13) - 6) / 8 } }
    static var noise: Tensor { tensor { Float((($0 * 5) % 11) - 5) / 4 } }
    static var xt: Tensor { tensor { Float((($0 * 11) % 17) - 8) / 8 } }
    static var z: Tensor { tensor { Float((($0 * 3) % 7) - 3) / 2 } }

    /// The analytic "network" 0.1·x + 0.01·t (t per item), labels ignored.
    static let toyModel: Denoiser = { x, t, _ in
        let out = Tensor(uninitialized: x.shape)
        let per = x.count / x.shape[0]
        for n in 0..<x.shape[0] {
            for j in 0..<per { out.data[n * per + j] = 0.1 * x.data[n * per + j] + 0.01 * Float(t[n]) }
        }
        return out
    }

    /// Largest |a − b| / max(1, |b|): absolute near zero, relative for large values.
    static func maxError(_ a: [Float], _ b: [Double]) -> Double {
        precondition(a.count == b.count, "\(a.count) values vs \(b.count) references")
        return zip(a, b).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
    }

    /// Largest relative error of doubles (schedule tables).
    static func maxRelativeError(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count)
        return zip(a, b).map { $1 == 0 ? abs($0) : abs($0 - $1) / abs($1) }.max() ?? 0
    }
}
