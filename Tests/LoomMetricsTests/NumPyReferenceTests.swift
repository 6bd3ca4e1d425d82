import Foundation
import LoomMetrics
import LoomTensor
import Testing

/// KID, precision/recall, density/coverage, the Inception-Score analogue, the accuracy and the
/// covariance against a second, independent implementation written with NumPy in the test
/// (NumPy comes with Debian's python3-h5py, which scripts/setup installs): full pairwise
/// distance matrices, sorting for the k-th neighbour, kernels written out, on small random
/// feature sets.
@Suite struct NumPyReferenceTests {
    /// A python3 that imports numpy.
    static func python() throws -> String {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/python3" } + ["/usr/bin/python3"]
        for p in candidates where FileManager.default.isExecutableFile(atPath: p) {
            let r = try run(p, ["-c", "import numpy"])
            if r.status == 0 { return p }
        }
        throw CocoaError(.executableNotLoadable, userInfo: [NSLocalizedDescriptionKey: "no python3 with numpy (install python3-numpy)"])
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    static let script = #"""
import json, sys
import numpy as np
d = json.load(open(sys.argv[1]))
real = np.array(d["real"]).reshape(d["n"], d["dim"])
fake = np.array(d["fake"]).reshape(d["m"], d["dim"])
logits = np.array(d["logits"]).reshape(d["m"], d["classes"])
labels = np.array(d["labels"])
k, dk = d["k"], d["density_k"]

def mmd2(x, y):
    dim = x.shape[1]
    kxx = (x @ x.T / dim + 1) ** 3
    kyy = (y @ y.T / dim + 1) ** 3
    kxy = (x @ y.T / dim + 1) ** 3
    m = x.shape[0]
    return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.sum() / (m * m)

subsets = [mmd2(real[np.array(r)], fake[np.array(f)]) for r, f in zip(d["kid_real"], d["kid_fake"])]

def dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
drr, dff, drf = dist(real, real), dist(fake, fake), dist(real, fake)
rr = np.sort(drr, axis=1)[:, k]          # column 0 is the point itself
rf = np.sort(dff, axis=1)[:, k]
rrd = np.sort(drr, axis=1)[:, dk]
precision = (drf <= rr[:, None]).any(axis=0).mean()
recall = (drf <= rf[None, :]).any(axis=1).mean()
density = (drf < rrd[:, None]).sum(axis=0).mean() / dk
coverage = (drf.min(axis=1) < rrd).mean()

p = np.exp(logits - logits.max(axis=1, keepdims=True)); p /= p.sum(axis=1, keepdims=True)
scores = []
for part in np.array_split(np.arange(len(p)), 10):
    q = p[part]; py = q.mean(axis=0)
    scores.append(np.exp((q * (np.log(q) - np.log(py))).sum(axis=1).mean()))
accuracy = (logits.argmax(axis=1) == labels).mean()
print(json.dumps({"kid_subsets": [float(s) for s in subsets], "kid": float(np.mean(subsets)), "kid_std": float(np.std(subsets)),
                  "precision": float(precision), "recall": float(recall), "density": float(density), "coverage": float(coverage),
                  "is": float(np.mean(scores)), "is_std": float(np.std(scores)), "accuracy": float(accuracy),
                  "cov": np.cov(fake, rowvar=False).ravel().tolist(), "mu": fake.mean(axis=0).tolist()}))
"""#

    @Test func metricsAgreeWithNumPy() throws {
        let python = try Self.python()
        let n = 300, m = 260, dim = 8, classes = 10
        var stream = RandomStream(seed: 11, purpose: .data)
        let r = Tensor.normal([n, dim], stream: &stream), f = Tensor.normal([m, dim], mean: 0.3, std: 1.2, stream: &stream)
        let l = Tensor.normal([m, classes], std: 2, stream: &stream)
        let real = Matrix(rows: n, columns: dim, floats: r.data), fake = Matrix(rows: m, columns: dim, floats: f.data)
        let logits = Matrix(rows: m, columns: classes, floats: l.data)
        let labels = (0..<m).map { $0 % classes }
        let kid = try KernelInceptionDistance.compute(real: real, fake: fake, subsets: 7, subsetSize: 100, seed: 5)
        let manifold = try ManifoldMetrics.compute(real: real, fake: fake, k: 3, densityK: 5)
        let score = try ClassifierScores.inceptionScore(logits: logits, splits: 10)
        let accuracy = try ClassifierScores.accuracy(logits: logits, labels: labels)
        let stats = try FeatureStatistics(features: fake)

        let input: [String: Any] = ["real": real.values, "fake": fake.values, "logits": logits.values, "labels": labels,
                                    "n": n, "m": m, "dim": dim, "classes": classes, "k": 3, "density_k": 5,
                                    "kid_real": kid.indices.map(\.real), "kid_fake": kid.indices.map(\.fake)]
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("loom-metrics-\(getpid()).json")
        try JSONSerialization.data(withJSONObject: input).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("loom-metrics-\(getpid()).py")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        let result = try Self.run(python, [script.path, file.path])
        #expect(result.status == 0, "\(result.stderr)")
        let numpy = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        func value(_ key: String) -> Double { numpy[key] as? Double ?? .nan }
        func close(_ a: Double, _ b: Double, _ tolerance: Double = 1e-9) -> Bool { abs(a - b) <= tolerance * max(1, abs(b)) }

        let subsets = numpy["kid_subsets"] as? [Double] ?? []
        #expect(subsets.count == 7)
        for (a, b) in zip(kid.subsets, subsets) { #expect(close(a, b), "KID subset \(a) vs NumPy \(b)") }
        #expect(close(kid.mean, value("kid")) && close(kid.std, value("kid_std")), "KID \(kid.mean) ± \(kid.std) vs \(value("kid")) ± \(value("kid_std"))")
        #expect(kid.mean > 0.01, "the shifted set must be far: KID \(kid.mean)")
        // Fractions of counts: the same counts (NumPy's mean rounds in the last bit, so compare
        // the counts; no distance lies on a radius in random data).
        func count(_ fraction: Double, of total: Int) -> Int { Int((fraction * Double(total)).rounded()) }
        #expect(count(manifold.precision, of: m) == count(value("precision"), of: m), "precision \(manifold.precision) vs \(value("precision"))")
        #expect(count(manifold.recall, of: n) == count(value("recall"), of: n), "recall \(manifold.recall) vs \(value("recall"))")
        #expect(close(manifold.density, value("density"), 1e-12), "density \(manifold.density) vs \(value("density"))")
        #expect(count(manifold.coverage, of: n) == count(value("coverage"), of: n), "coverage \(manifold.coverage) vs \(value("coverage"))")
        #expect(manifold.precision > 0.2 && manifold.precision < 1 && manifold.recall > 0.2 && manifold.recall < 1)
        #expect(close(score.mean, value("is")) && close(score.std, value("is_std")), "IS \(score) vs \(value("is")) ± \(value("is_std"))")
        #expect(count(accuracy, of: m) == count(value("accuracy"), of: m))
        let cov = numpy["cov"] as? [Double] ?? [], mu = numpy["mu"] as? [Double] ?? []
        #expect(cov.count == dim * dim && mu.count == dim)
        for (a, b) in zip(stats.covariance.values, cov) { #expect(close(a, b, 1e-11), "covariance \(a) vs np.cov \(b)") }
        for (a, b) in zip(stats.mean, mu) { #expect(close(a, b, 1e-12)) }
    }

    /// By hand: KID of 2×1 sets x = (0, 1), y = (1, 2) with d = 1: k(a, b) = (ab + 1)³;
    /// k(0,1) = 1, k(1,2) = 27, k(0,2) = 1, k(1,1) = 8 → (2·1 + 2·27)/2 − 2(1 + 1 + 8 + 27)/4 = 28 − 18.5 = 9.5.
    @Test func kidOfTwoTinySetsByHand() {
        let x = Matrix(rows: 2, columns: 1, values: [0, 1]), y = Matrix(rows: 2, columns: 1, values: [1, 2])
        #expect(abs(KernelInceptionDistance.mmd2(x, y) - 9.5) < 1e-12)
    }

    /// By hand: on a line, real points 0, 1, 2, 3 (k = 1: every radius 1) and fakes 0.5 and
    /// 10 (k = 1: both radii 9.5). Precision 1/2 (only 0.5 lies in a real ball); recall 1
    /// (0.5's ball [−9, 10] holds every real point); coverage 2/4 (only the balls of 0 and 1
    /// hold a fake, strictly inside); density: 0.5 lies in 2 real balls, 10 in none → 2/(1·2) = 1.
    @Test func manifoldMetricsOnALineByHand() throws {
        let real = Matrix(rows: 4, columns: 1, values: [0, 1, 2, 3]), fake = Matrix(rows: 2, columns: 1, values: [0.5, 10])
        let r = try ManifoldMetrics.compute(real: real, fake: fake, k: 1, densityK: 1)
        #expect(r.precision == 0.5)
        #expect(r.recall == 1)
        #expect(r.coverage == 0.5)
        #expect(r.density == 1)
    }
}
