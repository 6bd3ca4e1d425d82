import Foundation
import LoomStorage
import LoomTensor
import Testing

@Suite(.serialized) struct CheckpointCLITests {
    /// The lines of a program's output (the BLAS kernel warning may come first).
    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    @Test func killedWhileWritingKeepsThePreviousCheckpoint() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let r = try LoomBinary.loom(["selftest", "checkpoint-crash", dir],
                                    environment: [CheckpointStore.abortAfterBytesVariable: "300000",
                                                  CheckpointStore.abortAtStepVariable: "200"])
        #expect(r.status == SIGABRT, "status \(r.status)\n\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("saved step 100 to step-00000100.h5") && !r.stdout.contains("saved step 200"), "\(r.stdout)")
        #expect(r.stderr.contains("checkpoint test hook: aborting after"), "\(r.stderr)")

        let folder = dir + "/checkpoints"
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(files.count == 3 && files[1] == "latest" && files[2] == "step-00000100.h5", "\(files)")
        let partial = try #require(files.first { $0.hasPrefix(".step-00000200.h5.tmp-") })
        let partialBytes = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + partial))
        #expect(partialBytes.count >= 300_000 && partialBytes.count < 1_500_000, "\(partialBytes.count) bytes")
        #expect(try String(contentsOfFile: folder + "/latest", encoding: .utf8) == "step-00000100.h5\n")

        // The partial file under a final name would be skipped as unfinished, not trusted.
        try partialBytes.write(to: URL(fileURLWithPath: folder + "/step-00000200.h5"))
        let store = try CheckpointStore(run: URL(fileURLWithPath: dir))  // removes the dead writer's temporary
        #expect(!FileManager.default.fileExists(atPath: folder + "/" + partial))
        var skipped: [SkippedCheckpoint] = []
        let resumed = try #require(store.newestValid(skipped: &skipped))
        #expect(resumed.url.lastPathComponent == "step-00000100.h5" && resumed.state.step == 100)
        // (The 1.10 format marks a file open for write until its writer closes it.)
        #expect(skipped.count == 1 && skipped[0].reason.contains("incomplete checkpoint (its writer never closed it): its write was interrupted"), "\(skipped)")
        let printed = r.stdout.components(separatedBy: "model checksum ").last?.prefix(22) ?? ""
        #expect("xxh64:" + XXH64.hex(CheckpointFile.checksum(of: resumed.state.network("model")!)) == printed)
        // Adam keeps step, exp_avg and exp_avg_sq for each of the model's tensors (all parameters: no buffers).
        #expect(resumed.state.networks.map(\.name) == ["model", "ema"]
                && resumed.state.optimizer("adam")!.count == 3 * resumed.state.network("model")!.count)
        #expect(store.latest() == resumed.url)
    }

    @Test func h5dumpReadsTheLayoutTheREADMEDescribes() throws {
        guard let h5dump = LoomBinary.which("h5dump") else { Issue.record("h5dump is not installed"); return }
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let path = dir + "/c.h5"
        let state = CheckpointFixture.state(worldSize: 2)
        try CheckpointFile.write(state, to: path)
        let header = try LoomBinary.run(h5dump, ["-H", "-p", path])
        #expect(header.status == 0, "\(header.stderr)")
        for part in ["GROUP \"model\"", "GROUP \"ema\"", "GROUP \"optimizer\"", "GROUP \"adam\"", "GROUP \"rng\"", "GROUP \"meta\"",
                     "DATASET \"conv.weight\"", "H5T_IEEE_F32LE", "( 4, 3, 3, 3 )", "CHECKSUM FLETCHER32",
                     "DATASET \"state.conv.weight.exp_avg_sq\"", "DATASET \"noise\"", "H5T_STD_U64LE", "( 2, 2 )",
                     "ATTRIBUTE \"complete\"", "ATTRIBUTE \"checksum\"", "DATASET \"config\""] {
            #expect(header.stdout.contains(part), "h5dump header lacks \(part)")
        }
        let rng = try LoomBinary.run(h5dump, ["-d", "/rng/noise", "-w", "0", path])
        #expect(rng.stdout.contains("(0,0): 18446744073709551615, 9223372036854775808"), "\(rng.stdout)")
        let step = try LoomBinary.run(h5dump, ["-a", "/meta/step", path])
        #expect(step.stdout.contains("(0): 1234"), "\(step.stdout)")
        let config = try LoomBinary.run(h5dump, ["-d", "/meta/config", path])
        #expect(config.stdout.contains("lr: 0.000123"), "\(config.stdout)")
        let checksum = try LoomBinary.run(h5dump, ["-a", "/model/checksum", path])
        #expect(checksum.stdout.contains("xxh64:" + XXH64.hex(CheckpointFile.checksum(of: state.network("model")!))))
        let bias = try LoomBinary.run(h5dump, ["-d", "/model/conv.bias", "-m", "%.9g", "-w", "0", path])
        let values = bias.stdout.components(separatedBy: "(0): ").last!.components(separatedBy: "\n").first!
            .split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces))! }
        #expect(values == state.network("model")![1].1.array)
    }

    @Test func h5pyReadsACheckpointAsTheREADMEShows() throws {
        let python = try #require(try LoomBinary.pythonWithH5py(), "h5py is not installed (Debian package python3-h5py; scripts/setup installs it)")
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let state = CheckpointFixture.state(worldSize: 2)
        try CheckpointFile.write(state, to: dir + "/c.h5")
        let script = """
            import h5py, json, sys
            with h5py.File(sys.argv[1], "r") as f:
                assert f.attrs["complete"] == 1 and f.attrs["loom_format"] == "loom-checkpoint"
                ema = {k: v[...] for k, v in f["ema"].items()}
                w = ema["conv.weight"]
                assert w.dtype.name == "float32" and w.shape == (4, 3, 3, 3)
                print(list(f["model"].keys())[0], repr(float(w[1, 2, 0, 1])), int(f["meta"].attrs["step"]))
                print(json.loads(f["meta"].attrs["counters"])["big"], f["meta/config"].asstr()[()].splitlines()[1])
                print(int(f["rng/noise"][1, 0]), float(f["optimizer/adam"]["state.conv.weight.step"][()]))
            """
        let r = try LoomBinary.run(python, ["-c", script, dir + "/c.h5"])
        #expect(r.status == 0, "\(r.stderr)")
        let w = state.network("ema")![0].1.data[1 * 27 + 2 * 9 + 0 * 3 + 1]
        let expected = "conv.weight \(Double(w)) 1234\n\(Int.max - 1)   name: ddpm-unet-s  # größe ✓\n\(UInt64.max - 1) 1234.0\n"
        #expect(r.stdout == expected)
    }

    @Test func inspectAndExportThroughTheBinary() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let path = dir + "/step-00001234.h5"
        let state = CheckpointFixture.state()
        try CheckpointFile.write(state, to: path)
        let modelSum = "xxh64:" + XXH64.hex(CheckpointFile.checksum(of: state.network("model")!))
        let adamSum = "xxh64:" + XXH64.hex(CheckpointFile.checksum(of: state.optimizer("adam")!))

        // The fixture's sizes: model = conv.weight 4·3·3·3 + conv.bias 4 + norm.special 2·3
        // + bn.num_batches_tracked 1 + empty 0 + a.linear.weight 5·4 = 139 in 6 tensors;
        // adam = step 1 + exp_avg 108 + exp_avg_sq 108 = 217 in 3 tensors.
        let modelElements = 4 * 3 * 3 * 3 + 4 + 2 * 3 + 1 + 0 + 5 * 4, adamElements = 1 + 2 * (4 * 3 * 3 * 3)
        #expect(modelElements == 139 && adamElements == 217)
        let text = try LoomBinary.loom(["inspect", path])
        #expect(text.status == 0, "\(text.stderr)")
        for part in ["checkpoint \(path) (loom-checkpoint v1", "step 1234, epoch 7, world size 3, cursor epoch 7 position 4096",
                     "counters: big=9223372036854775806, ema_updates=1234", "rng: dropout (3 streams), noise (3 streams)",
                     "dataset train: xxh64:0123456789abcdef", "verified: every checksum matches",
                     "  model: \(modelElements) parameters in 6 tensors, checksum \(modelSum)", "    conv.weight ", "[4, 3, 3, 3]",
                     "bn.num_batches_tracked  []", "  adam: \(adamElements) elements in 3 tensors, checksum \(adamSum)",
                     "config:\n  model:\n    name: ddpm-unet-s  # größe ✓"] {
            #expect(text.stdout.contains(part), "inspect lacks \(part)\n\(text.stdout)")
        }
        let json = try LoomBinary.loom(["inspect", path, "--json"])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["step"] as? Int == 1234 && object["verified"] as? Bool == true && object["world_size"] as? Int == 3)
        let networks = try #require(object["networks"] as? [[String: Any]])
        #expect(networks.map { $0["name"] as? String } == ["model", "ema"])
        #expect(networks[0]["checksum"] as? String == modelSum && networks[0]["element_count"] as? Int == modelElements)
        let tensors = try #require(networks[0]["tensors"] as? [[String: Any]])
        #expect(tensors[0]["name"] as? String == "conv.weight" && tensors[0]["shape"] as? [Int] == [4, 3, 3, 3])

        // Export: only the EMA and the config, much smaller, itself verifiable and inspectable.
        let out = dir + "/ema.h5"
        let export = try LoomBinary.loom(["export", path, out])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(export.stdout.contains("exported ema of step 1234: \(modelElements) parameters in 6 tensors to \(out)"), "\(export.stdout)")
        let exported = try CheckpointFile.read(out)
        #expect(exported.networks.map(\.name) == ["ema"] && exported.optimizers.isEmpty && exported.rng.isEmpty)
        #expect(CheckpointFile.checksum(of: exported.network("ema")!) == CheckpointFile.checksum(of: state.network("ema")!))
        #expect(exported.network("ema")!.map(\.0) == state.network("ema")!.map(\.0))
        #expect(exported.configYAML == state.configYAML && exported.step == 1234)
        let sizes = try [path, out].map { try Data(contentsOf: URL(fileURLWithPath: $0)).count }
        #expect(sizes[1] < sizes[0])
        let inspectExport = try LoomBinary.loom(["inspect", out, "--no-tensors"])
        #expect(inspectExport.status == 0 && inspectExport.stdout.contains("export \(out) (loom-export v1"), "\(inspectExport.stdout)")
        #expect(!inspectExport.stdout.contains("optimizers") && !inspectExport.stdout.contains("conv.weight"))
        let generator = try LoomBinary.loom(["export", path, dir + "/g.h5", "--network", "model"])
        #expect(generator.status == 0)
        #expect(try CheckpointFile.read(dir + "/g.h5").metadata["exported_network"] == "model")

        // User mistakes: one line on stderr, exit 1.
        let again = try LoomBinary.loom(["export", path, out])
        #expect(again.status == 1 && lines(again.stderr).contains("loom export: \(out): already exists (remove it or pass --overwrite)"), "\(again.stderr)")
        #expect(try LoomBinary.loom(["export", path, out, "--overwrite"]).status == 0)
        let noNetwork = try LoomBinary.loom(["export", path, dir + "/x.h5", "--network", "critic"])
        #expect(noNetwork.status == 1 && noNetwork.stderr.contains("network critic: expected one of [\"model\", \"ema\"]"), "\(noNetwork.stderr)")
        let missing = try LoomBinary.loom(["inspect", dir + "/none.h5"])
        #expect(missing.status == 1 && lines(missing.stderr).contains("loom inspect: \(dir)/none.h5: not found"), "\(missing.stderr)")
        let notLoom = dir + "/other.h5"
        let f = try H5File.create(notLoom)
        try f.root.setAttribute("something", 1)
        f.close()
        let other = try LoomBinary.loom(["inspect", notLoom])
        #expect(other.status == 1 && other.stderr.contains("not a Loom checkpoint, export or dataset shard"), "\(other.stderr)")

        // A damaged checkpoint: summary printed, the problem on stderr, exit 1.
        let chunk = try CheckpointFixture.chunkRange(path, group: "optimizer/adam", dataset: "state.conv.weight.exp_avg")
        try CheckpointFixture.flipByte(path, at: chunk.lowerBound)
        let damaged = try LoomBinary.loom(["inspect", path])
        #expect(damaged.status == 1 && damaged.stdout.contains("verified: NO"), "\(damaged.stdout)")
        #expect(lines(damaged.stderr).contains { $0.hasPrefix("loom inspect: \(path): /optimizer/adam/state.conv.weight.exp_avg cannot be read") }, "\(damaged.stderr)")
        let damagedExport = try LoomBinary.loom(["export", path, dir + "/y.h5"])
        #expect(damagedExport.status == 1 && !FileManager.default.fileExists(atPath: dir + "/y.h5"))
    }

    @Test func inspectSummarisesDatasetsAndShards() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try Fixture.dataset(at: dir + "/ds", count: 30, shape: [4, 4, 3], shards: 2)
        let r = try LoomBinary.loom(["inspect", dir + "/ds"])
        #expect(r.status == 0, "\(r.stderr)")
        let checksum = try DatasetChecksum.of(folder: dir + "/ds")
        for part in ["dataset \(dir)/ds (loom-dataset v1)", "images uint8, sample shape 4×4×3 (H×W×C), 10 classes: c0, c1",
                     "split train: 30 samples in 2 shards", "train/shard-00001-of-00002.h5: 15 samples from 15", "checksum: \(checksum)"] {
            #expect(r.stdout.contains(part), "inspect lacks \(part)\n\(r.stdout)")
        }
        let json = try LoomBinary.loom(["inspect", dir + "/ds", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["checksum"] as? String == checksum && (object["index"] as? [String: Any])?["sample_shape"] as? [Int] == [4, 4, 3])
        let shard = try LoomBinary.loom(["inspect", dir + "/ds/train/shard-00000-of-00002.h5"])
        #expect(shard.status == 0 && shard.stdout.contains("@count = 15") && shard.stdout.contains("/images  [15, 4, 4, 3]"), "\(shard.stdout)")
    }
}
