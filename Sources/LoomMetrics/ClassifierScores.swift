import Foundation

/// What a classifier's outputs say about a sample set: the Inception-Score analogue and the
/// accuracy on the labels the samples were conditioned on.
public enum ClassifierScores {
    /// Row-wise softmax of `logits` (N × K), in double precision.
    public static func probabilities(_ logits: Matrix) -> Matrix {
        var p = logits
        let k = logits.columns
        for i in 0..<logits.rows {
            var top = -Double.infinity
            for j in 0..<k { top = max(top, logits[i, j]) }
            var sum = 0.0
            for j in 0..<k { let e = exp(logits[i, j] - top); p[i, j] = e; sum += e }
            for j in 0..<k { p[i, j] /= sum }
        }
        return p
    }

    /// The Inception Score of Salimans et al. with this classifier: exp(E_x KL(p(y|x) ‖ p(y)))
    /// per split of consecutive rows (p(y) the split's mean), then the mean and standard
    /// deviation (ddof 0) over the splits, as torch-fidelity's `isc` (10 splits).
    public static func inceptionScore(logits: Matrix, splits: Int = 10) throws -> (mean: Double, std: Double) {
        let n = logits.rows, k = logits.columns
        guard splits >= 1, n >= splits else { throw MetricError.tooFew(what: "samples for \(splits) Inception-Score splits", count: n, needed: splits) }
        let p = probabilities(logits)
        var scores: [Double] = []
        for s in 0..<splits {
            let lo = n * s / splits, hi = n * (s + 1) / splits
            var marginal = [Double](repeating: 0, count: k)
            for i in lo..<hi { for j in 0..<k { marginal[j] += p[i, j] } }
            for j in 0..<k { marginal[j] /= Double(hi - lo) }
            var kl = 0.0
            for i in lo..<hi {
                for j in 0..<k where p[i, j] > 0 { kl += p[i, j] * (log(p[i, j]) - log(marginal[j])) }
            }
            scores.append(exp(kl / Double(hi - lo)))
        }
        let mean = scores.reduce(0, +) / Double(splits)
        let std = (scores.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(splits)).squareRoot()
        return (mean, std)
    }

    /// The fraction of rows whose largest logit (first on ties) is their label.
    public static func accuracy(logits: Matrix, labels: [Int]) throws -> Double {
        guard labels.count == logits.rows else {
            throw MetricError.dimensionMismatch(what: "labels for the samples", first: labels.count, second: logits.rows)
        }
        guard !labels.isEmpty else { return 0 }
        var right = 0
        for i in 0..<logits.rows {
            var best = 0
            for j in 1..<logits.columns where logits[i, j] > logits[i, best] { best = j }
            if best == labels[i] { right += 1 }
        }
        return Double(right) / Double(labels.count)
    }
}
