import Foundation
import LoomStorage
import LoomTensor
import Testing

@Suite struct CheckpointFileTests {
    @Test func xxh64MatchesTheReferenceImplementation() {
        // Published vectors (xxHash's and python-xxhash's documentation).
        #expect(XXH64.hash([UInt8]()) == 0xEF46_DB37_51D8_E999)
        #expect(XXH64.hash(Array("a".utf8)) == 0xD24E_C4F1_A98C_6E5B)
        #expect(XXH64.hash(Array("abc".utf8)) == 0x44BC_2CF5_AD77_0999)
        #expect(XXH64.hash(Array("Nobody inspects the spammish repetition".utf8)) == 0xFBCE_A83C_8A37_8BF1)
        // Prefixes of a fixed pattern, seeds 0 and 12345, from libxxhash 0.8.1 (every tail path).
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: ($0 * 7 + 3) * ($0 / 5 + 1)) }
        let expected: [(Int, UInt64, UInt64)] = [
            (0, 0xef46db3751d8e999, 0x95584af7701f808d), (1, 0x1f25c8d0bc1f4bb6, 0x9102786a712ff044),
            (3, 0x31d2363f52e564c9, 0xc6270ec97f034479), (4, 0x9bb64b7d66ee9fda, 0x6a3181371bbc2026),
            (7, 0xfe6388948accb5bb, 0xe72d33cfbf31fe11), (8, 0xe3ba6e397e6b8b7e, 0xc3979434d41a2fcb),
            (31, 0x07d4744c3a51c8ab, 0x19d64466f197bf3f), (32, 0x5ecbd852bd616596, 0x0927ab68b708dbec),
            (33, 0x85df3b88df70aac9, 0x0ce534f071d5d267), (63, 0x52cd59a5f0936407, 0xd65532d6c9734f2c),
            (64, 0x06d9324352fdbd1b, 0xbf6539ca41ef2961), (100, 0x9f38fe5b40f6496f, 0x914eb6f647982a11),
            (1000, 0x5eff19c0ed5f1746, 0xd716da7ce764d37d),
        ]
        for (n, seed0, seed12345) in expected {
            #expect(XXH64.hash(Array(data[..<n])) == seed0, "length \(n)")
            #expect(XXH64.hash(Array(data[..<n]), seed: 12345) == seed12345, "length \(n), seed 12345")
        }
        // Streaming in uneven pieces gives the one-shot hash.
        for pieces in [[1000], [1, 2, 29, 968], [31, 1, 32, 936], [500, 0, 7, 493]] {
            var h = XXH64()
            var at = 0
            for p in pieces { h.update(Array(data[at..<(at + p)])); at += p }
            #expect(h.digest() == 0x5eff19c0ed5f1746, "pieces \(pieces)")
        }
        #expect(XXH64.hex(0xAB) == "00000000000000ab")
    }

    @Test func fullStateRoundTripsBitwise() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let state = CheckpointFixture.state()
        let path = dir + "/c.h5"
        try CheckpointFile.write(state, to: path)
        let back = try CheckpointFile.read(path)
        #expect(back.bitwiseDifference(from: state, includingCreationTime: true) == nil)
        // Field by field, independently of bitwiseDifference.
        #expect(back.networks.map(\.name) == ["model", "ema"])
        #expect(back.optimizers.map(\.name) == ["adam", "unused"])
        #expect(back.network("model")!.map(\.0) == state.network("model")!.map(\.0))  // written order, not name order
        for ((_, a), (_, b)) in zip(back.network("model")!, state.network("model")!) {
            #expect(a.shape == b.shape)
            #expect(a.array.map(\.bitPattern) == b.array.map(\.bitPattern))
        }
        #expect(back.network("model")![2].1.data[0].bitPattern == 0x7FC0_1234)
        #expect(back.network("model")![2].1.data[1].sign == .minus)
        #expect(back.network("model")![3].1.shape == [] && back.network("model")![3].1.item == 7)
        #expect(back.network("model")![4].1.shape == [0, 5])
        #expect(back.optimizer("unused")!.isEmpty)
        #expect(back.step == 1234 && back.epoch == 7 && back.worldSize == 3)
        #expect(back.cursor == DataCursor(epoch: 7, position: 4096))
        #expect(back.counters == ["ema_updates": 1234, "grad_accum_position": 1, "big": Int.max - 1, "negative": -5])
        #expect(back.rng["noise"]![2] == RandomStream(key: UInt64.max - 2, counter: 1 << 63 | 2))
        #expect(back.rng["dropout"]!.map(\.key) == [0, 77, 154])
        #expect(back.configYAML == state.configYAML)
        #expect(back.metadata == ["note": "ünïcödé \"quoted\" / slashed", "empty": ""])
        #expect(back.datasetChecksums["val/test"] == "xxh64:fedcba9876543210")
        #expect(back.createdAt == state.createdAt && back.loomVersion == "0.1.0-test")

        // The comparison itself sees a single flipped bit and a reordering.
        let flipped = back.snapshot()
        flipped.networks[1].tensors[5].1.data[3] = Float(bitPattern: flipped.networks[1].tensors[5].1.data[3].bitPattern ^ 1)
        #expect(flipped.bitwiseDifference(from: state)?.contains("ema: a.linear.weight[3]") == true)
        var reordered = back
        reordered.networks[0].tensors.swapAt(0, 1)
        #expect(reordered.bitwiseDifference(from: state) != nil)
    }

    @Test func groupChecksumFollowsItsDocumentedDefinition() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), b = Tensor.scalar(-0.5)
        // By hand: name order (b.x < z), each with length, bytes, rank, extents and data hash.
        var h = XXH64()
        for (name, t) in [("b.x", b), ("z", a)] {
            h.update(UInt64(name.utf8.count)); h.update(name)
            h.update(UInt64(t.shape.count)); t.shape.forEach { h.update(UInt64($0)) }
            h.update(XXH64.hash(t.array.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }))
        }
        #expect(CheckpointFile.checksum(of: [("z", a), ("b.x", b)]) == h.digest())
        #expect(CheckpointFile.checksum(of: [("b.x", b), ("z", a)]) == h.digest())
        #expect(CheckpointFile.checksum(of: [("z", a.reshaped([3, 2])), ("b.x", b)]) != h.digest())
        #expect(CheckpointFile.checksum(of: [("z", a), ("b.y", b)]) != h.digest())
        #expect(CheckpointFile.checksum(of: [("z", a)]) != h.digest())
    }

    @Test func badNamesAreRejectedBeforeAnythingIsWritten() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let t = Tensor.zeros([2])
        let cases: [(CheckpointState, [String])] = [
            (CheckpointState(networks: [(name: "model", tensors: [("a/b", t)])]), ["tensor in model name", "\"a/b\""]),
            (CheckpointState(networks: [(name: "meta", tensors: [])]), ["network name", "\"meta\""]),
            (CheckpointState(networks: [(name: "m", tensors: [("x", t), ("x", t)])]), ["tensor in network m", "unique"]),
            (CheckpointState(optimizers: [(name: "", tensors: [])]), ["optimizer name", "non-empty"]),
            (CheckpointState(networks: [(name: "m", tensors: [])], worldSize: 0), ["world size 0"]),
        ]
        for (state, parts) in cases {
            let r = Fixture.storageError(parts) { try CheckpointFile.write(state, to: dir + "/x.h5") }
            #expect(r.0, "\(r.1)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/x.h5"))
        }
    }

    @Test func damageIsReportedInOneLineNamingTheFile() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let state = CheckpointFixture.state()
        let clean = dir + "/clean.h5"
        try CheckpointFile.write(state, to: clean)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: clean))
        func damaged(_ name: String, _ damage: (String) throws -> Void) throws -> String {
            let path = dir + "/" + name
            try bytes.write(to: URL(fileURLWithPath: path))
            try damage(path)
            do {
                _ = try CheckpointFile.read(path)
                return "no error"
            } catch let e as StorageError {
                return e.description
            }
        }
        // A flipped byte inside a tensor's chunk: Fletcher-32 fails on read.
        let chunk = try CheckpointFixture.chunkRange(clean, group: "model", dataset: "conv.weight")
        let inChunk = try damaged("chunk.h5") { try CheckpointFixture.flipByte($0, at: chunk.lowerBound + 10) }
        #expect(inChunk.hasPrefix(dir + "/chunk.h5: /model/conv.weight cannot be read (damaged data)"), "\(inChunk)")
        // A scalar has no chunk, hence no Fletcher-32: the network checksum catches it.
        let seven = withUnsafeBytes(of: Float(7).bitPattern.littleEndian, Array.init)
        let scalarAt = try #require(try CheckpointFixture.offset(of: seven, in: clean))
        let inScalar = try damaged("scalar.h5") { try CheckpointFixture.flipByte($0, at: scalarAt + 1) }
        #expect(inScalar.contains("checksum of /model does not match"), "\(inScalar)")
        // The config text lives in a heap without checksum of its own: /meta's checksum catches it.
        let configAt = try #require(try CheckpointFixture.offset(of: Array("0.000123".utf8), in: clean))
        let inConfig = try damaged("config.h5") { try CheckpointFixture.flipByte($0, at: configAt + 3) }
        #expect(inConfig.contains("checksum of /meta and /rng does not match"), "\(inConfig)")
        // Truncation: HDF5 compares the stored end of file with the real one.
        let cut = try damaged("cut.h5") { try Data(bytes.prefix(bytes.count * 2 / 3)).write(to: URL(fileURLWithPath: $0)) }
        #expect(cut.hasPrefix(dir + "/cut.h5: cannot be opened (truncated or damaged)") && cut.contains("truncated file"), "\(cut)")
        // A flipped byte anywhere (metadata blocks carry their own checksums in the 1.10 format)
        // either fails the read with a message naming the file or hit bytes no value depends
        // on (free space in a heap): never silently different values.
        var failures = 0, positions = 0
        for at in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 150)) {
            let path = dir + "/anywhere.h5"
            var copy = bytes
            copy[at] ^= 0xFF
            try copy.write(to: URL(fileURLWithPath: path))
            positions += 1
            do {
                let back = try CheckpointFile.read(path)
                #expect(back.bitwiseDifference(from: state, includingCreationTime: true) == nil, "byte \(at) changed a value silently")
            } catch let e as StorageError {
                failures += 1
                #expect(e.description.hasPrefix(path + ": ") && !e.description.contains("\n"), "byte \(at): \(e)")
            }
        }
        #expect(failures >= positions / 2, "\(failures) of \(positions) flips detected")
        #expect(try CheckpointFile.read(clean).bitwiseDifference(from: state) == nil)
    }

    @Test func datasetChecksumCoversIndexAndShards() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try Fixture.dataset(at: dir + "/ds", count: 20, shape: [4, 4, 1], shards: 2)
        let full = try DatasetChecksum.of(folder: dir + "/ds")
        let quick = try DatasetChecksum.of(folder: dir + "/ds", contents: false)
        #expect(full.hasPrefix("xxh64:") && full.count == 22 && full != quick)
        #expect(try DatasetChecksum.of(folder: dir + "/ds") == full)
        let shard = dir + "/ds/train/shard-00001-of-00002.h5"
        let size = try Data(contentsOf: URL(fileURLWithPath: shard)).count
        try CheckpointFixture.flipByte(shard, at: size - 100)
        #expect(try DatasetChecksum.of(folder: dir + "/ds") != full)
        #expect(try DatasetChecksum.of(folder: dir + "/ds", contents: false) == quick)
    }
}
