import Foundation
import LoomStorage
import Testing

/// The HDF5 readers (dataset index, shards, checkpoints) on corrupted and truncated files:
/// seeded random bit flips, truncation at many lengths, and wrong types, shapes and attributes
/// written with h5py. Reads run in a child (`loom selftest read`), so a crash inside libhdf5
/// would end only the child; every read must end in a one-line error naming the file, or in
/// exactly the data of the undamaged file (a flip in bytes no value depends on).
@Suite(.serialized) struct ReaderFuzzTests {
    struct Outcome { var ok: Bool; var text: String }

    /// Reads every path in one child; checks it ended normally and printed one record per path.
    func read(_ paths: [String]) throws -> [String: Outcome] {
        var outcomes: [String: Outcome] = [:]
        for batch in stride(from: 0, to: paths.count, by: 200).map({ Array(paths[$0..<min($0 + 200, paths.count)]) }) {
            // 200 small files read in well under a second; a hang inside libhdf5 is killed.
            let r = try LoomBinary.loom(["selftest", "read"] + batch, timeout: 60)
            #expect(!r.signaled && r.status == 0, "the reader child ended with \(r.signaled ? "signal" : "status") \(r.status):\n\(r.stderr.suffix(2000))")
            let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count == batch.count, "\(lines.count) lines for \(batch.count) paths (a message of more than one line?):\n\(r.stdout.suffix(3000))")
            for line in lines {
                let parts = line.split(separator: "\t", maxSplits: 2).map(String.init)
                guard parts.count == 3, batch.contains(parts[0]) else { Issue.record("stray line: \(line)"); continue }
                outcomes[parts[0]] = Outcome(ok: parts[1] == "ok", text: parts[2])
            }
        }
        return outcomes
    }

    /// Checks each damaged copy: an error naming `names(path)`, or the clean digest.
    func judge(_ outcomes: [String: Outcome], clean: String, names: (String) -> String) -> (errors: Int, harmless: Int) {
        var errors = 0, harmless = 0
        for (path, o) in outcomes.sorted(by: { $0.key < $1.key }) {
            if o.ok {
                #expect(o.text == clean, "\(path): read without error but different data (digest \(o.text), clean \(clean))")
                harmless += 1
            } else {
                #expect(o.text.contains(names(path)), "\(path): error does not name \(names(path)): \(o.text)")
                errors += 1
            }
        }
        return (errors, harmless)
    }

    /// `count` copies of `bytes` in `dir`, each with `damage` applied (given the copy's index).
    func copies(_ bytes: Data, _ dir: String, _ prefix: String, _ count: Int, _ damage: (Int, inout Data) -> Void) throws -> [String] {
        try (0..<count).map { i in
            var copy = bytes
            damage(i, &copy)
            let path = "\(dir)/\(prefix)-\(i).h5"
            try copy.write(to: URL(fileURLWithPath: path))
            return path
        }
    }

    @Test func checkpoints() throws {
        let dir = Fixture.folder()
        defer { if ProcessInfo.processInfo.environment["LOOM_KEEP_FUZZ"] == nil { Fixture.remove(dir) } else { print("kept \(dir)") } }
        let clean = dir + "/clean.h5"
        try CheckpointFile.write(CheckpointFixture.state(worldSize: 2), to: clean)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: clean))
        var rng = FuzzRandom(state: 2024)
        // One flipped bit, 1–8 flipped bytes in a row, truncation at random and at edge lengths.
        var paths = try copies(bytes, dir, "bit", 1200) { _, d in d[rng.below(d.count)] ^= UInt8(1 << rng.below(8)) }
        paths += try copies(bytes, dir, "run", 200) { _, d in
            let at = rng.below(d.count)
            for i in at..<min(d.count, at + 1 + rng.below(8)) { d[i] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        let lengths = [0, 1, 7, 8, 47, 48, 95, 96, 511, 512, 2047, 2048, bytes.count / 2, bytes.count - 8, bytes.count - 1]
            + (0..<25).map { _ in rng.below(bytes.count) }
        paths += try copies(bytes, dir, "cut", lengths.count) { i, d in d = d.prefix(lengths[i]) }
        let outcomes = try read([clean] + paths)
        let cleanDigest = try #require(outcomes[clean].flatMap { $0.ok ? $0.text : nil }, "the clean checkpoint does not read")
        let (errors, harmless) = judge(outcomes.filter { $0.key != clean }, clean: cleanDigest) { $0 }
        print("checkpoint fuzz: \(paths.count) damaged copies of \(bytes.count) bytes: \(errors) one-line errors naming the file, \(harmless) flips in bytes no value depends on")
        for p in paths where p.contains("/cut-") { #expect(outcomes[p]?.ok == false, "\(p): a truncated checkpoint read without error") }
        #expect(errors >= paths.count / 2, "only \(errors) of \(paths.count) damaged copies were refused")
    }

    @Test func datasets() throws {
        let dir = Fixture.folder()
        defer { if ProcessInfo.processInfo.environment["LOOM_KEEP_FUZZ"] == nil { Fixture.remove(dir) } else { print("kept \(dir)") } }
        let clean = dir + "/clean"
        try Fixture.dataset(at: clean, count: 60, shape: [4, 4, 1], shards: 3, chunk: 4)
        let files = ["index.json"] + (0..<3).map { "train/shard-0000\($0)-of-00003.h5" }
        var rng = FuzzRandom(state: 77)
        var paths: [String] = [], damagedFile: [String: String] = [:]
        var isCut: Set<String> = []
        for n in 0..<480 {
            let file = files[n % files.count], folder = "\(dir)/d\(n)"
            try FileManager.default.copyItem(atPath: clean, toPath: folder)
            var data = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + file))
            if n % 6 == 5 {
                data = data.prefix(rng.below(data.count))   // truncated
                isCut.insert(folder)
            } else {
                data[rng.below(data.count)] ^= UInt8(1 << rng.below(8))
            }
            try data.write(to: URL(fileURLWithPath: folder + "/" + file))
            paths.append(folder)
            damagedFile[folder] = folder + "/" + file
        }
        let outcomes = try read([clean] + paths)
        let cleanDigest = try #require(outcomes[clean].flatMap { $0.ok ? $0.text : nil }, "the clean dataset does not read")
        // A damaged index.json may name a shard that does not exist: the error then names that
        // shard "listed in index.json".
        let (errors, harmless) = judge(outcomes.filter { $0.key != clean }, clean: cleanDigest) {
            damagedFile[$0]!.hasSuffix("index.json") ? "index.json" : damagedFile[$0]!
        }
        print("dataset fuzz: \(paths.count) damaged folders (index.json and 3 shards): \(errors) one-line errors naming the file, \(harmless) flips in bytes no value depends on")
        for p in isCut { #expect(outcomes[p]?.ok == false, "\(p): a truncated file read without error") }
        #expect(errors >= paths.count / 3, "only \(errors) of \(paths.count) damaged folders were refused")
    }

    /// Wrong types, shapes and attributes, written with h5py into copies of a checkpoint and
    /// a shard: each is refused in one line naming the file.
    @Test func wrongTypesShapesAndAttributes() throws {
        let python = try #require(try LoomBinary.pythonWithH5py(), "h5py is not installed (Debian package python3-h5py; scripts/setup installs it)")
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let ckpt = dir + "/clean.h5"
        try CheckpointFile.write(CheckpointFixture.state(worldSize: 2), to: ckpt)
        try Fixture.dataset(at: dir + "/ds", count: 20, shape: [4, 4, 1], shards: 1, chunk: 4)
        let shard = "train/shard-00000-of-00001.h5"
        // Each edit: name, target (c: checkpoint, d: dataset shard), Python statements on `f`.
        let edits: [(String, Character, String)] = [
            ("tensor-float64", "c", "d = f['model/conv.bias'][()]; del f['model/conv.bias']; f['model/conv.bias'] = d.astype('float64')"),
            ("tensor-shape", "c", "d = f['model/conv.bias'][()]; del f['model/conv.bias']; f['model/conv.bias'] = d.reshape(2, 2)"),
            ("tensor-int", "c", "d = f['model/conv.bias'][()]; del f['model/conv.bias']; f['model/conv.bias'] = d.astype('int32')"),
            ("tensor-missing", "c", "del f['model/conv.bias']"),
            ("tensor-extra", "c", "f['model/extra'] = [1.0, 2.0]"),
            ("checksum-string", "c", "f['model'].attrs['checksum'] = 'xxh64:zz'"),
            ("checksum-int", "c", "f['model'].attrs['checksum'] = 5"),
            ("format-version", "c", "f.attrs['format_version'] = 99"),
            ("format-version-string", "c", "f.attrs['format_version'] = 'one'"),
            ("complete-missing", "c", "del f.attrs['complete']"),
            ("meta-missing", "c", "del f['meta']"),
            ("step-negative", "c", "f['meta'].attrs['step'] = -1"),
            ("step-float", "c", "f['meta'].attrs['step'] = 1.5"),
            ("rng-shape", "c", "k = list(f['rng'].keys())[0]; d = f['rng'][k][()]; del f['rng'][k]; f['rng'][k] = d.reshape(-1)[:3]"),
            ("images-float", "d", "d = f['images'][()]; del f['images']; f['images'] = d.astype('float32')"),
            ("images-shape", "d", "d = f['images'][()]; del f['images']; f['images'] = d.reshape(20, 16)"),
            ("images-rows", "d", "d = f['images'][()]; del f['images']; f['images'] = d[:10]"),
            ("labels-float", "d", "d = f['labels'][()]; del f['labels']; f['labels'] = d.astype('float64')"),
            ("labels-range", "d", "d = f['labels'][()]; del f['labels']; f['labels'] = d * 1000"),
            ("labels-negative", "d", "d = f['labels'][()]; del f['labels']; f['labels'] = d - 100"),
            ("sample-shape-attr", "d", "f.attrs['sample_shape'] = [4, 4, 3]"),
            ("count-attr", "d", "f.attrs['count'] = 2**62"),
            ("count-attr-string", "d", "f.attrs['count'] = 'many'"),
            ("kind-attr", "d", "f.attrs['kind'] = 'float32'"),
        ]
        var paths: [String] = [], named: [String: String] = [:]
        var script = "import h5py, shutil, json, os\n"
        for (name, target, code) in edits {
            if target == "c" {
                let path = "\(dir)/\(name).h5"
                script += "shutil.copy('\(ckpt)', '\(path)')\nwith h5py.File('\(path)', 'r+') as f:\n    \(code)\n"
                paths.append(path); named[path] = path
            } else {
                let folder = "\(dir)/\(name)", file = folder + "/" + shard
                // The index records each shard's size: refresh it so the damage reaches the HDF5 reader.
                script += "shutil.copytree('\(dir)/ds', '\(folder)')\nwith h5py.File('\(file)', 'r+') as f:\n    \(code)\n"
                script += "i = json.load(open('\(folder)/index.json'))\nfor s in i['splits']['train']['shards']: s['bytes'] = os.path.getsize('\(folder)/' + s['file'])\njson.dump(i, open('\(folder)/index.json', 'w'))\n"
                paths.append(folder); named[folder] = file
            }
        }
        let edit = try LoomBinary.run(python, ["-c", script])
        try #require(edit.status == 0, "h5py edits failed: \(edit.stderr.suffix(1500))")
        let outcomes = try read(paths)
        for path in paths {
            let o = try #require(outcomes[path])
            print("reader input \(path.split(separator: "/").last!) → \(o.ok ? "read" : o.text)")
            #expect(!o.ok, "\(path): read without error")
            #expect(o.text.contains(named[path]!), "\(path): error does not name \(named[path]!): \(o.text)")
        }
    }

    /// The first object of the first global heap collection ("GCOL") of `data`: its size field's offset.
    static func firstHeapObjectSize(_ data: Data) -> Int? {
        let bytes = [UInt8](data), pattern = Array("GCOL".utf8) + [1, 0, 0, 0]
        guard let at = (0...(bytes.count - 32)).first(where: { Array(bytes[$0..<($0 + 8)]) == pattern }) else { return nil }
        return at + 16 + 8
    }

    /// The commands a user runs, on a run whose newest checkpoint is damaged where libhdf5
    /// 1.10 used to crash (a global heap object size with a high bit set) and inside a tensor.
    @Test func commandsOnADamagedNewestCheckpoint() throws {
        let folder = try TrainingTests.stripes(count: 32)
        defer { Fixture.remove(folder) }
        let run = folder + "/run", config = TrainingTests.configs + "/ddpm-fashion.yaml"
        let tiny = TrainingTests.tiny(folder, steps: 2) + ["checkpoint.every=1", "checkpoint.keep_last=5", "--run-dir", run]
        let trained = try LoomBinary.loom(["worker", config] + tiny)
        try #require(trained.status == 0, "\(trained.stderr)")
        let newest = run + "/checkpoints/step-00000002.h5"
        let good = try Data(contentsOf: URL(fileURLWithPath: newest))
        let sizeAt = try #require(Self.firstHeapObjectSize(good), "no global heap in \(newest)")
        for (name, offset, mask) in [("heap object size", sizeAt + 7, UInt8(0x20)), ("tensor data", good.count / 2, UInt8(0x10))] {
            var bad = good
            bad[offset] ^= mask
            try bad.write(to: URL(fileURLWithPath: newest))
            let sample = try LoomBinary.loom(["sample", newest, folder + "/x.png", "--n", "1", "--steps", "1"])
            print("reader input \(name) flip → loom sample: exit \(sample.status): \(sample.stderr.trimmingCharacters(in: .newlines))")
            #expect(!sample.signaled && sample.status == 1 && sample.stderrLines.count == 1 && sample.stderr.contains(newest),
                    "\(name): loom sample gave \(sample.status):\n\(sample.stderr)")
            let inspect = try LoomBinary.loom(["inspect", newest])
            print("reader input \(name) flip → loom inspect: exit \(inspect.status): \(inspect.stderr.trimmingCharacters(in: .newlines))")
            #expect(!inspect.signaled && (inspect.status == 0 || (inspect.status == 1 && inspect.stderrLines.count == 1 && inspect.stderr.contains(newest))),
                    "\(name): loom inspect gave \(inspect.status):\n\(inspect.stderr)")
            // Resuming skips the damaged newest checkpoint, saying why, and continues from step 1.
            let resumed = try LoomBinary.loom(["worker", config] + TrainingTests.tiny(folder, steps: 3)
                                              + ["checkpoint.every=1", "checkpoint.keep_last=5", "--run-dir", run, "--resume", "auto"])
            let said = (resumed.stdout + resumed.stderr).split(separator: "\n").first { $0.contains("step-00000002.h5") }
            print("reader input \(name) flip → loom worker --resume auto: exit \(resumed.status), says: \(said ?? "nothing")")
            #expect(!resumed.signaled && resumed.status == 0 && said != nil, "\(name): \(resumed.status)\n\(resumed.stdout)\n\(resumed.stderr)")
            #expect(resumed.stdout.contains("step 3/3"), "\(resumed.stdout)")
            try good.write(to: URL(fileURLWithPath: newest))
            try? FileManager.default.removeItem(atPath: run + "/checkpoints/step-00000003.h5")
        }
    }
}

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
}
