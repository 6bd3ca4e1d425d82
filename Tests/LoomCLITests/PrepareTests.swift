import Foundation
import LoomStorage
import Testing

@Suite struct PrepareRoundTripTests {
    @Test func idxRoundTripEveryByteAndLabel() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let f = Fixture.idx(in: dir, count: 103, rows: 5, cols: 7)
        let out = dir + "/ds"
        let index = try DatasetConversion.idx(output: out, images: f.images, labels: f.labels,
                                              options: PrepareOptions(writer: WriterOptions(shards: 3, compression: 5, chunkSamples: 4)))
        #expect(index.sampleShape == [5, 7, 1] && index.classNames == (0...9).map(String.init))
        let train = index.splits["train"]!
        #expect(train.count == 103 && train.shards.map(\.count) == [34, 34, 35] && train.shards.map(\.first) == [0, 34, 68])
        #expect(train.shards.map(\.file) == (0..<3).map { "train/shard-0000\($0)-of-00003.h5" })

        let ds = try ShardedDataset(folder: out, expectedShape: [5, 7, 1])
        #expect(try ds.readAll() == f.pixels)
        #expect(ds.labels == f.labelValues)
        // Reads spanning a shard boundary.
        var some = [UInt8](repeating: 0, count: 4 * 35)
        try some.withUnsafeMutableBytes { try ds.read(32..<36, into: $0.baseAddress!) }
        #expect(some == Array(f.pixels[(32 * 35)..<(36 * 35)]))

        // Each shard describes itself.
        let shard = try H5File.open(out + "/" + train.shards[1].file)
        #expect(try shard.root.stringAttribute("loom_format") == "loom-dataset")
        #expect(try shard.root.intAttribute("format_version") == 1)
        #expect(try shard.root.intAttribute("first_index") == 34)
        #expect(try shard.root.intsAttribute("sample_shape") == [5, 7, 1])
        #expect(try shard.root.stringsAttribute("class_names").count == 10)
        let images = try shard.root.openDataset("images")
        #expect(images.type == .uint8 && images.shape == [34, 5, 7, 1] && images.chunks == [4, 5, 7, 1])
        #expect(try shard.root.openDataset("labels").type == .int64)
    }

    @Test func validationSplitIsDisjointAndComplete() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let f = Fixture.idx(in: dir, count: 200, rows: 3, cols: 3)
        let out = dir + "/ds"
        _ = try DatasetConversion.idx(output: out, images: f.images, labels: f.labels,
                                      options: PrepareOptions(writer: WriterOptions(samplesPerShard: 64), valFraction: 0.1, seed: 5))
        let train = try ShardedDataset(folder: out, split: "train"), val = try ShardedDataset(folder: out, split: "val")
        #expect(train.count == 180 && val.count == 20)
        #expect(train.index.splits["train"]!.shards.count == 3 && train.index.splits["val"]!.shards.count == 1)
        let valIndices = DatasetConversion.validationIndices(count: 200, fraction: 0.1, seed: 5)
        let rest = (0..<200).filter { !valIndices.contains($0) }
        func samples(_ idx: [Int]) -> [UInt8] { idx.flatMap { f.pixels[($0 * 9)..<($0 * 9 + 9)] } }
        #expect(try val.readAll() == samples(valIndices))
        #expect(try train.readAll() == samples(rest))
        #expect(val.labels == valIndices.map { f.labelValues[$0] })
        #expect(Set(valIndices).count == 20 && Set(valIndices).isDisjoint(with: rest))
    }

    @Test func pngFolderWithClassSubfolders() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        var expected: [UInt8] = []
        for (c, name) in ["cat", "dog"].enumerated() {
            try FileManager.default.createDirectory(atPath: "\(dir)/src/\(name)", withIntermediateDirectories: true)
            for i in 0..<3 {
                let pixels = Fixture.bytes(6 * 6 * 3, seed: UInt64(10 * c + i))
                try PNG.write(path: "\(dir)/src/\(name)/\(i).png", pixels: pixels, width: 6, height: 6, channels: 3)
                expected += pixels
            }
        }
        // A non-PNG file is ignored.
        FileManager.default.createFile(atPath: "\(dir)/src/cat/notes.txt", contents: Data("x".utf8))
        let index = try DatasetConversion.pngFolder(output: dir + "/ds", folder: dir + "/src", size: 6,
                                                    options: PrepareOptions(writer: WriterOptions(shards: 2)))
        #expect(index.classNames == ["cat", "dog"] && index.sampleShape == [6, 6, 3])
        let ds = try ShardedDataset(folder: dir + "/ds")
        #expect(try ds.readAll() == expected)
        #expect(ds.labels == [0, 0, 0, 1, 1, 1])

        // Resized to 4×4 gray: each sample matches the resize of its decoded PNG.
        _ = try DatasetConversion.pngFolder(output: dir + "/small", folder: dir + "/src", size: 4, channels: 1,
                                            options: PrepareOptions(fit: .crop))
        let small = try ShardedDataset(folder: dir + "/small")
        let first = ImageResize.fit(try PNG.read(path: "\(dir)/src/cat/0.png", channels: 1), size: 4, mode: .crop)
        #expect(Array(try small.readAll().prefix(16)) == first.pixels)
    }

    @Test func cifarBinaryPlanarToInterleaved() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        // Records: label, then R plane, G plane, B plane (32×32 each).
        var expected: [UInt8] = [], labels: [Int] = []
        for (b, n) in [(1, 3), (2, 2)] {
            var file: [UInt8] = []
            for r in 0..<n {
                let label = (b * 7 + r) % 10
                let planes = Fixture.bytes(3072, seed: UInt64(100 * b + r))
                file += [UInt8(label)] + planes
                labels.append(label)
                for p in 0..<1024 { expected += [planes[p], planes[1024 + p], planes[2048 + p]] }
            }
            FileManager.default.createFile(atPath: "\(dir)/data_batch_\(b).bin", contents: Data(file))
        }
        FileManager.default.createFile(atPath: "\(dir)/test_batch.bin", contents: Data([3] + Fixture.bytes(3072, seed: 1)))
        let index = try DatasetConversion.cifar10(output: dir + "/ds", folder: dir, options: PrepareOptions())
        #expect(index.classNames == CIFAR10.classNames && index.splits["test"]?.count == 1)
        let ds = try ShardedDataset(folder: dir + "/ds", expectedShape: [32, 32, 3])
        #expect(try ds.readAll() == expected)
        #expect(ds.labels == labels)

        FileManager.default.createFile(atPath: "\(dir)/data_batch_3.bin", contents: Data([1, 2, 3]))
        let bad = Fixture.storageError(["data_batch_3.bin", "not a multiple of 3073"]) {
            _ = try DatasetConversion.cifar10(output: dir + "/ds2", folder: dir, options: PrepareOptions())
        }
        #expect(bad.0, "\(bad.1)")
    }

    @Test func latentDatasetsUseTheSameLayout() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let values: [Float] = (0..<144).map { (i: Int) -> Float in Float(i) * 0.25 - 3 }
        let source = MemorySamples(values: values, sampleCount: 16)
        _ = try DatasetConversion.write(output: dir + "/lat", kind: .latents, sampleShape: [2, 2, 4], classNames: [],
                                        source: "test latents", splits: [("train", source)],
                                        options: PrepareOptions(writer: WriterOptions(shards: 2)))
        let ds = try ShardedDataset(folder: dir + "/lat", expectedKind: .latents)
        #expect(ds.index.dtype == .float32 && ds.labels == nil)
        let bytes = try ds.readAll()
        let floats = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(floats == values)
        let shard = try H5File.open(dir + "/lat/train/shard-00000-of-00002.h5")
        #expect(try shard.root.openDataset("latents").shape == [4, 2, 2, 4])
    }

    @Test func failedConversionLeavesNothingBehind() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
        for i in 0..<4 {
            try PNG.write(path: "\(dir)/src/\(i).png", pixels: Fixture.bytes(16, seed: UInt64(i)), width: 4, height: 4, channels: 1)
        }
        FileManager.default.createFile(atPath: "\(dir)/src/2.png", contents: Data("broken".utf8))
        let failed = Fixture.storageError(["2.png", "not a readable PNG"]) {
            _ = try DatasetConversion.pngFolder(output: dir + "/ds", folder: dir + "/src", size: 4, options: PrepareOptions())
        }
        #expect(failed.0, "\(failed.1)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["src"])

        // An existing output is refused up front, and replaced only with overwrite.
        _ = try Fixture.dataset(at: dir + "/ds", count: 10, shape: [2, 2, 1], shards: 1)
        let exists = Fixture.storageError([dir + "/ds", "already exists"]) {
            _ = try Fixture.dataset(at: dir + "/ds", count: 10, shape: [2, 2, 1], shards: 1)
        }
        #expect(exists.0, "\(exists.1)")
        let source = MemorySamples(values: [UInt8](repeating: 5, count: 12), sampleCount: 4)
        _ = try DatasetConversion.write(output: dir + "/ds", sampleShape: [2, 2, 1], classNames: [], source: "again",
                                        splits: [("train", source)],
                                        options: PrepareOptions(writer: WriterOptions(overwrite: true)))
        #expect(try ShardedDataset(folder: dir + "/ds").count == 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["ds", "src"])
    }
}
