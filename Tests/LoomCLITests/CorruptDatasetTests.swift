import Foundation
import LoomStorage
import Testing

@Suite struct CorruptDatasetTests {
    /// A 3-shard dataset of 60 samples of 4×4×1 in a fresh folder.
    func make(_ name: String = #function) throws -> (dir: String, ds: String) {
        let dir = Fixture.folder(name)
        try Fixture.dataset(at: dir + "/ds", count: 60, shape: [4, 4, 1], shards: 3, chunk: 4)
        return (dir, dir + "/ds")
    }

    /// Rewrites index.json with the shards' current file sizes (after a deliberate edit).
    func refreshSizes(_ ds: String) throws {
        var index = try DatasetIndex.load(folder: ds)
        for (name, split) in index.splits {
            var s = split
            for i in s.shards.indices {
                s.shards[i].bytes = try FileManager.default.attributesOfItem(atPath: ds + "/" + s.shards[i].file)[.size] as! Int
            }
            index.splits[name] = s
        }
        try index.encoded().write(to: URL(fileURLWithPath: ds + "/index.json"))
    }

    @Test func missingAndTruncatedShards() throws {
        let (dir, ds) = try make()
        defer { Fixture.remove(dir) }
        let shard = ds + "/train/shard-00001-of-00003.h5"
        let data = try Data(contentsOf: URL(fileURLWithPath: shard))
        FileManager.default.createFile(atPath: shard, contents: data.prefix(data.count - 100))
        let truncated = Fixture.storageError([shard, "truncated", "\(data.count - 100) bytes, expected \(data.count)"]) {
            _ = try ShardedDataset(folder: ds)
        }
        #expect(truncated.0, "\(truncated.1)")
        try FileManager.default.removeItem(atPath: shard)
        let missing = Fixture.storageError([shard, "not found", "re-run `loom prepare`"]) { _ = try ShardedDataset(folder: ds) }
        #expect(missing.0, "\(missing.1)")
        // The same truncated file behind a matching index entry: HDF5 itself refuses it.
        FileManager.default.createFile(atPath: shard, contents: data.prefix(data.count / 2))
        try refreshSizes(ds)
        let cut = Fixture.storageError([shard]) { _ = try ShardedDataset(folder: ds).readAll() }
        #expect(cut.0, "\(cut.1)")
    }

    @Test func corruptChunkIsCaughtByItsChecksum() throws {
        let (dir, ds) = try make()
        defer { Fixture.remove(dir) }
        let shard = ds + "/train/shard-00002-of-00003.h5"
        let range = try H5File.open(shard).root.openDataset("images").chunkByteRange(2)
        var data = try Data(contentsOf: URL(fileURLWithPath: shard))
        data[range.lowerBound + range.count / 2] ^= 0x5A
        try data.write(to: URL(fileURLWithPath: shard))

        // Metadata is intact, so the dataset opens; reading the chunk fails, naming the shard.
        let dataset = try ShardedDataset(folder: ds)
        let read = Fixture.storageError([shard, "read rows"]) { _ = try dataset.readAll() }
        #expect(read.0, "\(read.1)")
        let memory = Fixture.storageError([shard]) {
            _ = try DataLoader(dataset: dataset, options: LoaderOptions(batchSize: 4, residency: .memory))
        }
        #expect(memory.0, "\(memory.1)")
        // Streaming: the error surfaces from the background thread through next(), then stays.
        let loader = try DataLoader(dataset: dataset, options: LoaderOptions(batchSize: 4, residency: .stream))
        let stream = Fixture.storageError([shard, "read rows"]) { for _ in 0..<15 { _ = try loader.next() } }
        #expect(stream.0, "\(stream.1)")
        #expect(throws: StorageError.self) { _ = try loader.next() }
    }

    @Test func indexProblems() throws {
        let (dir, ds) = try make()
        defer { Fixture.remove(dir) }
        let indexPath = ds + "/index.json"
        let good = try Data(contentsOf: URL(fileURLWithPath: indexPath))

        let shape = Fixture.storageError([indexPath, "sample_shape", "[4, 4, 1]", "[32, 32, 1] (the model config"]) {
            _ = try ShardedDataset(folder: ds, expectedShape: [32, 32, 1])
        }
        #expect(shape.0, "\(shape.1)")
        let split = Fixture.storageError([indexPath, "split", "\"test\"", "[\"train\"]"]) { _ = try ShardedDataset(folder: ds, split: "test") }
        #expect(split.0, "\(split.1)")

        let newer = String(decoding: good, as: UTF8.self).replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 7")
        try Data(newer.utf8).write(to: URL(fileURLWithPath: indexPath))
        let version = Fixture.storageError([indexPath, "format version 7 is not supported", "known: 1"]) { _ = try ShardedDataset(folder: ds) }
        #expect(version.0, "\(version.1)")

        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: indexPath))
        let json = Fixture.storageError([indexPath, "not valid JSON"]) { _ = try ShardedDataset(folder: ds) }
        #expect(json.0, "\(json.1)")

        let noShape = String(decoding: good, as: UTF8.self).replacingOccurrences(of: "\"sample_shape\"", with: "\"shape\"")
        try Data(noShape.utf8).write(to: URL(fileURLWithPath: indexPath))
        let schema = Fixture.storageError([indexPath, "sample_shape is missing"]) { _ = try ShardedDataset(folder: ds) }
        #expect(schema.0, "\(schema.1)")

        try FileManager.default.removeItem(atPath: indexPath)
        let missing = Fixture.storageError([indexPath, "not found"]) { _ = try ShardedDataset(folder: ds) }
        #expect(missing.0, "\(missing.1)")
        let noFolder = Fixture.storageError([dir + "/nothing", "not found"]) { _ = try ShardedDataset(folder: dir + "/nothing") }
        #expect(noFolder.0, "\(noFolder.1)")
    }

    @Test func wrongSchemaInsideAShard() throws {
        let (dir, ds) = try make()
        defer { Fixture.remove(dir) }
        let shard = ds + "/train/shard-00000-of-00003.h5"
        let original = try Data(contentsOf: URL(fileURLWithPath: shard))

        try H5File.open(shard, writable: true).root.setAttribute("format_version", 99)
        try refreshSizes(ds)
        let version = Fixture.storageError([shard, "format version 99"]) { _ = try ShardedDataset(folder: ds) }
        #expect(version.0, "\(version.1)")

        // float32 images where uint8 belong.
        try FileManager.default.removeItem(atPath: shard)
        do {
            let f = try H5File.create(shard)
            for (k, v) in [("loom_format", "loom-dataset"), ("kind", "images"), ("split", "train")] { try f.root.setAttribute(k, v) }
            for (k, v) in [("format_version", 1), ("shard_index", 0), ("shard_count", 3), ("first_index", 0), ("count", 20)] {
                try f.root.setAttribute(k, v)
            }
            try f.root.setAttribute("sample_shape", [4, 4, 1])
            try f.root.write("images", values: [Float](repeating: 0, count: 320), shape: [20, 4, 4, 1])
            try f.root.write("labels", values: [Int](repeating: 0, count: 20), shape: [20])
        }
        try refreshSizes(ds)
        let type = Fixture.storageError([shard, "dataset /images type is float32, expected uint8"]) { _ = try ShardedDataset(folder: ds) }
        #expect(type.0, "\(type.1)")

        // A shard of another split and count, and one whose labels exceed the classes.
        try original.write(to: URL(fileURLWithPath: shard))
        try refreshSizes(ds)
        let h5 = try H5File.open(shard, writable: true)
        try h5.root.setAttribute("count", 21)
        h5.close()
        try refreshSizes(ds)
        let count = Fixture.storageError([shard, "attribute count is 21, expected 20 (index.json)"]) { _ = try ShardedDataset(folder: ds) }
        #expect(count.0, "\(count.1)")

        try Data(repeating: 7, count: original.count).write(to: URL(fileURLWithPath: shard))
        try refreshSizes(ds)
        let garbage = Fixture.storageError([shard, "not an HDF5 file"]) { _ = try ShardedDataset(folder: ds) }
        #expect(garbage.0, "\(garbage.1)")
    }
}
