import Foundation
import LoomStorage
import Testing

@Suite struct H5FileTests {
    @Test func attributesRoundTrip() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let path = dir + "/a.h5"
        do {
            let f = try H5File.create(path)
            try f.root.setAttribute("int", 42)
            try f.root.setAttribute("negative", -7)
            try f.root.setAttribute("double", 0.125)
            try f.root.setAttribute("ints", [3, 1, 4, 1, 5])
            try f.root.setAttribute("doubles", [2.5, -1e-9])
            try f.root.setAttribute("text", "grüße, ✓")
            try f.root.setAttribute("texts", ["a", "", "T-shirt/top"])
            try f.root.setAttribute("int", 43)  // replacing an attribute
            let g = try f.root.createGroup("model")
            try g.setAttribute("name", "unet")
            f.close()
        }
        let f = try H5File.open(path)
        #expect(try f.root.intAttribute("int") == 43)
        #expect(try f.root.intAttribute("negative") == -7)
        #expect(try f.root.doubleAttribute("double") == 0.125)
        #expect(try f.root.intsAttribute("ints") == [3, 1, 4, 1, 5])
        #expect(try f.root.doublesAttribute("doubles") == [2.5, -1e-9])
        #expect(try f.root.stringAttribute("text") == "grüße, ✓")
        #expect(try f.root.stringsAttribute("texts") == ["a", "", "T-shirt/top"])
        #expect(Set(try f.root.attributeNames()) == ["int", "negative", "double", "ints", "doubles", "text", "texts"])
        #expect(try f.root.children() == ["model"])
        #expect(try f.root.openGroup("model").stringAttribute("name") == "unet")
        #expect(f.root.hasAttribute("int") && !f.root.hasAttribute("nope"))

        let missing = Fixture.storageError([path, "@nope", "missing"]) { _ = try f.root.intAttribute("nope") }
        #expect(missing.0, "\(missing.1)")
        let wrongType = Fixture.storageError([path, "@text", "expected an integer", "string"]) { _ = try f.root.intAttribute("text") }
        #expect(wrongType.0, "\(wrongType.1)")
        let noGroup = Fixture.storageError([path, "group /other", "missing"]) { _ = try f.root.openGroup("other") }
        #expect(noGroup.0, "\(noGroup.1)")
    }

    @Test func filteredDatasetsAndRowHyperslabs() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let path = dir + "/d.h5"
        let floats = (0..<(10 * 3 * 4)).map { Float($0) * 0.5 - 7 }
        let bytes = Fixture.bytes(10 * 6, seed: 3)
        do {
            let f = try H5File.create(path)
            try f.root.write("w", values: floats, shape: [10, 3, 4], chunks: [3, 3, 4], compression: 6, shuffle: true)
            let d = try f.root.createDataset("b", type: .uint8, shape: [10, 6], chunks: [4, 6], compression: 1, checksum: true)
            try bytes.withUnsafeBytes { try d.writeRows(0, count: 4, from: $0.baseAddress!) }
            try bytes.withUnsafeBytes { try d.writeRows(4, count: 6, from: $0.baseAddress! + 24) }
            try f.root.write("empty", values: [Int](), shape: [0])
        }
        let f = try H5File.open(path)
        let w = try f.root.openDataset("w")
        #expect(w.type == .float32 && w.shape == [10, 3, 4] && w.chunks == [3, 3, 4])
        #expect(try w.read(as: Float.self) == floats)
        // Numeric conversion on read (float32 → float64).
        #expect(try f.root.read("w", as: Double.self) == floats.map(Double.init))
        var rows = [Float](repeating: 0, count: 2 * 12)
        try rows.withUnsafeMutableBytes { try w.readRows(5, count: 2, into: $0.baseAddress!) }
        #expect(rows == Array(floats[60..<84]))

        let b = try f.root.openDataset("b")
        #expect(b.type == .uint8)
        #expect(try b.read(as: UInt8.self) == bytes)
        #expect(try b.chunkCount() == 3)
        #expect(try f.root.openDataset("empty").shape == [0])

        let outside = Fixture.storageError(["rows of", "8..<12", "within 0..<10"]) {
            var buffer = [UInt8](repeating: 0, count: 24)
            try buffer.withUnsafeMutableBytes { try b.readRows(8, count: 4, into: $0.baseAddress!) }
        }
        #expect(outside.0, "\(outside.1)")
        let noDataset = Fixture.storageError([path, "dataset /x", "missing"]) { _ = try f.root.openDataset("x") }
        #expect(noDataset.0, "\(noDataset.1)")
    }

    @Test func badFilesGiveTypedErrors() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let missing = Fixture.storageError([dir + "/none.h5", "not found"]) { _ = try H5File.open(dir + "/none.h5") }
        #expect(missing.0, "\(missing.1)")

        let text = dir + "/text.h5"
        FileManager.default.createFile(atPath: text, contents: Data("hello, not hdf5".utf8))
        let notHDF5 = Fixture.storageError([text, "not an HDF5 file"]) { _ = try H5File.open(text) }
        #expect(notHDF5.0, "\(notHDF5.1)")

        // A real file cut in half: HDF5 notices the end of file is short and the open fails.
        let whole = dir + "/whole.h5"
        do {
            let f = try H5File.create(whole)
            try f.root.write("x", values: [Float](repeating: 1, count: 100_000), shape: [100_000])
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: whole))
        let cut = dir + "/cut.h5"
        FileManager.default.createFile(atPath: cut, contents: data.prefix(data.count / 2))
        let truncated = Fixture.storageError([cut]) {
            let f = try H5File.open(cut)
            _ = try f.root.read("x", as: Float.self)
        }
        #expect(truncated.0, "\(truncated.1)")

        let exists = Fixture.storageError([whole, "already exists"]) { _ = try H5File.create(whole) }
        #expect(exists.0, "\(exists.1)")
        #expect(StorageNative.hdf5ThreadSafe)
    }
}
