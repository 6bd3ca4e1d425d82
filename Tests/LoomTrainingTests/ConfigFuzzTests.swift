import Foundation
import LoomModels
import LoomTraining
import Testing
import Yams

/// A small deterministic generator (SplitMix64) so every fuzz case is the same on every run.
struct FuzzRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
}

/// Random values for every key of every config in configs/ (in range, out of range, wrong
/// types, extreme sizes): each load ends in a one-line `ConfigError` naming the key, or in a
/// config whose numbers are all finite and whose model fits this machine's memory.
@Suite struct ConfigFuzzTests {
    static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("configs").path

    static var configFiles: [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: configs))!.filter { $0.hasSuffix(".yaml") }.sorted()
            .map { configs + "/" + $0 }
    }

    /// Values no key may take silently: extreme sizes, non-finite numbers, wrong types.
    static let extremes = ["0", "-1", "2147483648", "4611686018427387904", "9223372036854775807",
                           "9223372036854775808", "-9223372036854775808", "1e308", "1e309", "-1e308", "nan", ".nan",
                           "inf", "-inf", ".inf", "1.5", "-0.0", "1e-320", "abc", "''", "true", "[1, 2]", "[]",
                           "[nan, 1]", "{a: 1}", "[[1]]", "~"]

    /// Every leaf key of the resolved config (what the loader read, family keys included) and its value.
    static func leaves(_ c: RunConfig) throws -> [(path: String, node: Node)] {
        var out: [(String, Node)] = []
        func walk(_ node: Node, _ path: String) {
            if let m = node.mapping {
                for (k, v) in m { walk(v, path.isEmpty ? k.string! : path + "." + k.string!) }
            } else {
                out.append((path, node))
            }
        }
        walk(try #require(try Yams.compose(yaml: c.resolvedYAML)), "")
        return out
    }

    /// Plausible values near `node`'s own (in range or just outside it).
    static func near(_ node: Node, _ rng: inout FuzzRandom) -> [String] {
        if let s = node.scalar?.string, let i = Int(s) {
            return ["\(i / 2)", "\(i * 2)", "\(i + 1)", "\(i - 1)", "\(rng.below(2 * abs(i) + 3))", "\(i * 1000)"]
        }
        if let s = node.scalar?.string, let d = Double(s) {
            return ["\(d / 2)", "\(d * 2)", "\(-d)", "\(d * 1e6)", "\(Double(rng.below(1000)) / 999)"]
        }
        if let seq = node.sequence {
            let n = rng.below(5)
            return ["[\((0..<n).map { _ in String(rng.pick([1, 2, 3, 4, 8, 16, 0, -2])) }.joined(separator: ", "))]",
                    "[\(seq.map { $0.scalar?.string ?? "0" }.joined(separator: ", ")), 1]"]
        }
        let s = node.scalar?.string ?? ""
        return [s + "x", String(s.dropLast()), s.uppercased()]
    }

    /// The outcome of one load: nil when it is acceptable, else what is wrong.
    static func judge(file: String, overrides: [String], keys: [String], physicalMemory: Double) -> String? {
        do {
            let c = try RunConfig.load(file: file, overrides: overrides)
            // An accepted config: every number finite, the model representable and within memory.
            for bad in [": nan", ": inf", ": -inf", "nan,", "inf,", "nan]", "inf]"] where c.resolvedYAML.contains(bad) {
                return "accepted \(overrides) with a non-finite value (\(bad))"
            }
            let bytes = c.family.modelSize.trainingBytes(batch: c.train.batchSize)
            if !(bytes.isFinite && bytes <= physicalMemory) { return "accepted \(overrides) needing \(bytes) bytes" }
            if let d = c.diffusionFamily, c.sample.steps > d.diffusion.timesteps { return "accepted \(overrides): sample.steps > timesteps" }
            return nil
        } catch let e as ConfigError {
            let text = e.description
            if text.contains("\n") { return "\(overrides): error of more than one line: \(text)" }
            if !keys.contains(where: { text.contains($0) }) { return "\(overrides): error names none of \(keys): \(text)" }
            return nil
        } catch {
            return "\(overrides): \(type(of: error)) instead of a ConfigError: \(error)"
        }
    }

    @Test func everyKeyOfEveryConfig() throws {
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        var rng = FuzzRandom(state: 12)
        var cases = 0, accepted = 0, problems: [String] = []
        let files = Self.configFiles
        #expect(files.count >= 8, "configs/ holds \(files.count) configs")
        for file in files {
            let base = try RunConfig.load(file: file)
            let leaves = try Self.leaves(base)
            // Sections themselves get wrong types too.
            let paths = leaves.map { ($0.path, $0.node) } + ["model", "train", "optimizer", "sample"].map { ($0, Node("x")) }
            for (path, node) in paths {
                for value in Self.extremes + Self.near(node, &rng) {
                    cases += 1
                    if let p = Self.judge(file: file, overrides: ["\(path)=\(value)"], keys: [path], physicalMemory: memory) {
                        problems.append("\(file): \(p)")
                    } else if (try? RunConfig.load(file: file, overrides: ["\(path)=\(value)"])) != nil {
                        accepted += 1
                    }
                }
            }
            // Keys of the other family are refused by name.
            for path in ["diffusion.timesteps", "gan.loss", "model.z_dim", "model.base_channels"] where !leaves.contains(where: { $0.path == path }) {
                cases += 1
                if let p = Self.judge(file: file, overrides: ["\(path)=1"], keys: [path], physicalMemory: memory) { problems.append(p) }
                if (try? RunConfig.load(file: file, overrides: ["\(path)=1"])) != nil { problems.append("\(file): accepted \(path)") }
            }
            // Several keys at once: the error names one of them.
            for _ in 0..<60 {
                let chosen = (0..<(2 + rng.below(3))).map { _ in rng.pick(leaves) }
                let overrides = chosen.map { "\($0.path)=\(rng.pick(Self.extremes + Self.near($0.node, &rng)))" }
                cases += 1
                if let p = Self.judge(file: file, overrides: overrides, keys: chosen.map(\.path), physicalMemory: memory) {
                    problems.append("\(file): \(p)")
                }
            }
        }
        #expect(problems.isEmpty, "\(problems.count) of \(cases) cases:\n\(problems.prefix(40).joined(separator: "\n"))")
        // The fuzz reaches both outcomes: values near the configs' own are mostly accepted.
        #expect(cases > 5000 && accepted > 500, "\(cases) cases, \(accepted) accepted")
    }

    /// Sizes at the upper bounds load only when the whole model fits: the refusal names the
    /// keys and is one line.
    @Test func modelsThatCannotFitAreRefusedAtLoad() throws {
        func error(_ overrides: [String]) -> String? {
            do { _ = try RunConfig.load(file: nil, overrides: overrides); return nil } catch { return "\(error)" }
        }
        // 4096 base channels: ≈ 2·10¹⁰ parameters, ≈ 4·10¹¹ bytes with gradients, Adam and EMA.
        let big = try #require(error(["model.base_channels=4096"]))
        #expect(big.hasPrefix("(defaults): 'model.base_channels', 'model.channel_mult'") && big.contains("'train.batch_size' make a model that needs about"))
        #expect(big.contains("lower them") && !big.contains("\n"))
        // 1024² images with attention at full resolution: the 1024⁴ attention scores.
        #expect(error(["model.image_size=1024", "model.attention_resolutions=[1024]"])?.contains("make a model that needs about") == true)
        // The bounds themselves.
        #expect(error(["model.base_channels=4611686018427387904"]) == "(defaults): 'model.base_channels' must be a multiple of model.groups (8) between 1 and 4096, found 4611686018427387904")
        #expect(error(["train.batch_size=2147483648"]) == "(defaults): 'train.batch_size' must be between 1 and 65536, found 2147483648")
        #expect(error(["model.channel_mult=[1,2,2,2,2,2,2,2,2]"]) == "(defaults): 'model.channel_mult' must be a list of 1 to 8 integers between 1 and 64, found [1, 2, 2, 2, 2, 2, 2, 2, 2]")
        #expect(error(["optimizer.lr=nan"]) == "(defaults): 'optimizer.lr' must be a number between 1e-30 and 1e30 (float32), found nan")
        #expect(error(["optimizer.lr=1e309"]) == "(defaults): 'optimizer.lr' must be a number between 1e-30 and 1e30 (float32), found inf")
        #expect(error(["model.type=dcgan", "model.g_channels=1025"]) == "(defaults): 'model.g_channels' must be between 1 and 1024, found 1025")
        #expect(error(["train.max_steps=9223372036854775808"]) == "(defaults): 'train.max_steps' must be an integer, found '9223372036854775808'")
        // A model that does fit is accepted at the same batch.
        #expect(error(["model.base_channels=64"]) == nil)
    }
}
