import Foundation
import LoomStorage
import Testing

@Suite(.serialized) struct PrepareCLITests {
    @Test func idxCommandWritesADatasetThatH5dumpReads() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let f = Fixture.idx(in: dir, count: 30, rows: 6, cols: 5)
        let r = try LoomBinary.loom(["prepare", "idx", "--images", f.images, "--labels", f.labels, dir + "/out",
                                     "--shards", "2", "--compression", "9"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("wrote ") && r.stdout.contains("6×5×1") && r.stdout.contains("train 30 in 2 shards"), "\(r.stdout)")
        #expect(r.stderr.contains("prepare train: 30/30 samples (100%)"), "\(r.stderr)")
        #expect(try ShardedDataset(folder: dir + "/out").readAll() == f.pixels)

        guard let h5dump = LoomBinary.which("h5dump") else { Issue.record("h5dump is not installed"); return }
        let shard = dir + "/out/train/shard-00001-of-00002.h5"
        let header = try LoomBinary.run(h5dump, ["-H", "-p", shard])
        #expect(header.status == 0, "\(header.stderr)")
        for part in ["DATASET \"images\"", "H5T_STD_U8LE", "( 15, 6, 5, 1 )", "COMPRESSION DEFLATE { LEVEL 9 }",
                     "CHECKSUM FLETCHER32", "DATASET \"labels\"", "H5T_STD_I64LE"] {
            #expect(header.stdout.contains(part), "h5dump header lacks \(part)")
        }
        let labels = try LoomBinary.run(h5dump, ["-d", "/labels", "-w", "0", "-y", shard])
        let numbers = labels.stdout.components(separatedBy: "DATA {").last!.components(separatedBy: "}").first!
            .split(whereSeparator: { !$0.isNumber }).map { Int($0)! }
        #expect(numbers == Array(f.labelValues[15...]))
        let attribute = try LoomBinary.run(h5dump, ["-a", "/first_index", shard])
        #expect(attribute.stdout.contains("(0): 15"), "\(attribute.stdout)")
    }

    @Test func h5pyReadsTheLayoutTheREADMEDescribes() throws {
        let python = try #require(try LoomBinary.pythonWithH5py(), "h5py is not installed (Debian package python3-h5py; scripts/setup installs it)")
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let pixels = try Fixture.dataset(at: dir + "/ds", count: 25, shape: [3, 2, 3], shards: 2)
        let script = """
            import h5py, json, sys
            root = sys.argv[1]
            index = json.load(open(root + "/index.json"))
            total, labels = 0, []
            for s in index["splits"]["train"]["shards"]:
                with h5py.File(root + "/" + s["file"], "r") as f:
                    assert f.attrs["loom_format"] == "loom-dataset" and f.attrs["format_version"] == 1
                    assert list(f.attrs["sample_shape"]) == index["sample_shape"]
                    x = f["images"][...]
                    assert x.dtype.name == "uint8" and x.shape == (s["count"], 3, 2, 3), x.shape
                    total += int(x.astype("int64").sum())
                    labels += [int(v) for v in f["labels"][...]]
                    names = [n if isinstance(n, str) else n.decode() for n in f.attrs["class_names"]]
            print(total, ",".join(map(str, labels)), names[3])
            """
        let r = try LoomBinary.run(python, ["-c", script, dir + "/ds"])
        #expect(r.status == 0, "\(r.stderr)")
        let expected = "\(pixels.map(Int.init).reduce(0, +)) \((0..<25).map { String($0 % 10) }.joined(separator: ",")) c3"
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == expected)
    }

    @Test func userMistakesAreOneLineErrorsAndExitOne() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let missing = try LoomBinary.loom(["prepare", "fashion-mnist", dir + "/out", "--source", dir + "/nowhere"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("loom prepare: \(dir)/nowhere/train-images-idx3-ubyte.gz: not found"), "\(missing.stderr)")
        #expect(missing.stderr.contains("apt-get install dataset-fashion-mnist"))
        #expect(!missing.stderr.contains("Fatal error"))

        let f = Fixture.idx(in: dir, count: 4, rows: 2, cols: 2)
        let ok = try LoomBinary.loom(["prepare", "idx", "--images", f.images, dir + "/out", "--quiet"])
        #expect(ok.status == 0 && !ok.stderr.contains("prepare train"), "\(ok.stderr)")
        let again = try LoomBinary.loom(["prepare", "idx", "--images", f.images, dir + "/out"])
        #expect(again.status == 1 && again.stderr.contains("\(dir)/out: already exists (remove it or pass --overwrite)"), "\(again.stderr)")
        let level = try LoomBinary.loom(["prepare", "idx", "--images", f.images, dir + "/other", "--compression", "12"])
        #expect(level.status == 1 && level.stderr.contains("--compression must be between 0 and 9, found 12"), "\(level.stderr)")
        let mismatch = try LoomBinary.loom(["prepare", "idx", "--images", f.images, "--labels", f.images, dir + "/other"])
        #expect(mismatch.status == 1 && mismatch.stderr.contains("idx dimensions is [4, 2, 2], expected [4]"), "\(mismatch.stderr)")
        let fit = try LoomBinary.loom(["prepare", "png", dir, dir + "/other", "--fit", "squash"])
        #expect(fit.status == 1 && fit.stderr.contains("--fit must be one of crop, pad, found 'squash'"), "\(fit.stderr)")
        let empty = try LoomBinary.loom(["prepare", "png", dir + "/out/train", dir + "/other"])
        #expect(empty.status == 1 && empty.stderr.contains("no .png files found"), "\(empty.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/other"))
    }

    @Test func killedConversionLeavesNoDatasetThatLooksWhole() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let f = Fixture.idx(in: dir, count: 20_000, rows: 28, cols: 28)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: LoomBinary.path)
        process.arguments = ["prepare", "idx", "--images", f.images, "--labels", f.labels, dir + "/out", "--size", "48",
                             "--per-shard", "2000", "--compression", "9", "--quiet"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Kill it as soon as its hidden work folder has a shard in it.
        let deadline = Date().addingTimeInterval(20)
        var killedMidway = false
        while process.isRunning && Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            if let tmp = names.first(where: { $0.hasPrefix(".out.tmp-") }),
               ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/" + tmp + "/train")) ?? []).count >= 2 {
                kill(process.processIdentifier, SIGKILL)
                killedMidway = true
                break
            }
            usleep(500)
        }
        process.waitUntilExit()
        if killedMidway {
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"), "a killed conversion published its output")
            let opened = Fixture.storageError([dir + "/out", "not found"]) { _ = try ShardedDataset(folder: dir + "/out") }
            #expect(opened.0, "\(opened.1)")
        } else {
            // Finished before it could be killed: then it must be whole.
            #expect(try ShardedDataset(folder: dir + "/out").count == 20_000)
        }
    }

    @Test func benchDataPrintsRatesNextToTheConsumption() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try Fixture.dataset(at: dir + "/gray", count: 300, shape: [32, 32, 1], shards: 2)
        try Fixture.dataset(at: dir + "/rgb", count: 300, shape: [32, 32, 3], shards: 2)
        let r = try LoomBinary.loom(["bench", "data", "--fashion", dir + "/gray", "--rgb", dir + "/rgb", "--seconds", "0.05"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("consumption: 80 images/s per process (placeholder: PyTorch's reference W1 rate 67 images/s × 1.2"))
        for row in ["32×32×1        memory    1 rank", "32×32×1        memory    rank 0 of 2",
                    "32×32×3        stream    1 rank", "32×32×3        stream    rank 0 of 2"] {
            #expect(r.stdout.contains(row), "bench output lacks \(row):\n\(r.stdout)")
        }
        let measured = try LoomBinary.loom(["bench", "data", "--fashion", dir + "/gray", "--rgb", dir + "/rgb", "--seconds", "0.05",
                                            "--residency", "memory", "--consumption", "1000000000"])
        #expect(measured.stdout.contains("consumption: 1000000000 images/s per process\n"))
        #expect(measured.stdout.contains("below the 20× goal"))
    }
}
