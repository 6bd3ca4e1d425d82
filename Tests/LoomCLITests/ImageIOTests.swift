import Foundation
import LoomStorage
import LoomTensor
import Testing

@Suite struct PNGTests {
    @Test func grayAndRGBRoundTrip() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        for channels in [1, 3] {
            let pixels = Fixture.bytes(5 * 7 * channels, seed: UInt64(channels))
            let path = dir + "/x\(channels).png"
            try PNG.write(path: path, pixels: pixels, width: 7, height: 5, channels: channels)
            let image = try PNG.read(path: path)
            #expect(image == Image8(width: 7, height: 5, channels: channels, pixels: pixels))
        }
        // Gray read as RGB repeats the value in every channel.
        let gray = try PNG.read(path: dir + "/x1.png"), asRGB = try PNG.read(path: dir + "/x1.png", channels: 3)
        #expect(asRGB.pixels == gray.pixels.flatMap { [$0, $0, $0] })
    }

    @Test func alphaAndPaletteImages() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        // RGBA: opaque pixels keep their colour, transparent ones become black.
        let rgba: [UInt8] = [10, 20, 30, 255, 200, 100, 50, 0, 1, 2, 3, 255, 90, 80, 70, 0]
        try PNG.write(path: dir + "/a.png", pixels: rgba, width: 2, height: 2, channels: 4)
        let a = try PNG.read(path: dir + "/a.png")
        #expect(a.channels == 3 && a.pixels == [10, 20, 30, 0, 0, 0, 1, 2, 3, 0, 0, 0])

        let palette: [UInt8] = [0, 0, 0, 255, 0, 0, 0, 128, 255]
        let indices: [UInt8] = [0, 1, 2, 2, 1, 0]
        try PNG.writePalette(path: dir + "/p.png", indices: indices, palette: palette, width: 3, height: 2)
        let p = try PNG.read(path: dir + "/p.png")
        #expect(p.channels == 3 && p.pixels == indices.flatMap { Array(palette[(Int($0) * 3)..<(Int($0) * 3 + 3)]) })
    }

    @Test func corruptAndMissingFilesAreErrors() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try PNG.write(path: dir + "/ok.png", pixels: Fixture.bytes(64 * 64, seed: 9), width: 64, height: 64, channels: 1)
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/ok.png"))
        FileManager.default.createFile(atPath: dir + "/cut.png", contents: data.prefix(data.count / 2))
        let cut = Fixture.storageError([dir + "/cut.png", "corrupt PNG"]) { _ = try PNG.read(path: dir + "/cut.png") }
        #expect(cut.0, "\(cut.1)")
        FileManager.default.createFile(atPath: dir + "/text.png", contents: Data("no png".utf8))
        let text = Fixture.storageError([dir + "/text.png", "not a readable PNG"]) { _ = try PNG.read(path: dir + "/text.png") }
        #expect(text.0, "\(text.1)")
        let missing = Fixture.storageError([dir + "/none.png", "not found"]) { _ = try PNG.read(path: dir + "/none.png") }
        #expect(missing.0, "\(missing.1)")
    }

    @Test func gridTilesImagesWithPadding() throws {
        // Three 2×3 gray images in 2 columns, 1 pixel padding: a 7×9 canvas.
        let values: [Float] = (0..<18).map { Float($0 % 3) - 1 }  // -1, 0, 1 …
        let images = Tensor(values, shape: [3, 2, 3, 1])
        let g = try PNG.grid(images: images, columns: 2, padding: 1)
        #expect(g.width == 2 * 3 + 3 && g.height == 2 * 2 + 3 && g.channels == 1)
        func at(_ x: Int, _ y: Int) -> UInt8 { g.pixels[y * g.width + x] }
        // Image 1 starts at x = 1 + 3 + 1 = 5, y = 1; image 2 at x = 1, y = 1 + 2 + 1 = 4.
        #expect([at(5, 1), at(6, 1), at(7, 1)] == [0, 128, 255])
        #expect([at(1, 4), at(2, 4), at(3, 5)] == [0, 128, 255])
        #expect(at(0, 0) == 0 && at(5, 4) == 0)  // padding and the empty fourth cell stay black
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        try PNG.writeGrid(path: dir + "/g.png", images: images, columns: 2, padding: 1)
        #expect(try PNG.read(path: dir + "/g.png") == g)
    }
}

@Suite struct ResizeTests {
    /// The antialiased triangle filter written out directly for one axis (independent of the taps code).
    func reference(_ src: [Float], out: Int) -> [Float] {
        let scale = Float(src.count) / Float(out), support = max(scale, 1)
        return (0..<out).map { i in
            let center = (Float(i) + 0.5) * scale
            var acc: Float = 0, total: Float = 0
            for j in 0..<src.count {
                let w = max(0, 1 - abs(Float(j) + 0.5 - center) / support)
                acc += w * src[j]
                total += w
            }
            return acc / total
        }
    }

    @Test func separableTriangleFilterMatchesDirectFormula() {
        let src = Fixture.bytes(12 * 9, seed: 4)
        let image = Image8(width: 12, height: 9, channels: 1, pixels: src)
        for (w, h) in [(5, 4), (20, 15), (12, 9), (7, 13)] {
            let r = ImageResize.resample(image, width: w, height: h)
            // Rows first, then columns, in float, then rounded.
            let rows = (0..<9).map { y in reference(src[(y * 12)..<(y * 12 + 12)].map(Float.init), out: w) }
            var expected = [UInt8](repeating: 0, count: w * h)
            for x in 0..<w {
                let column = reference(rows.map { $0[x] }, out: h)
                for y in 0..<h { expected[y * w + x] = UInt8(min(max(column[y].rounded(), 0), 255)) }
            }
            let worst = zip(r.pixels, expected).map { abs(Int($0) - Int($1)) }.max()!
            #expect(worst <= 1, "\(w)×\(h): off by \(worst)")
        }
        // Same size is the identity; a constant image stays constant.
        #expect(ImageResize.resample(image, width: 12, height: 9) == image)
        let flat = Image8(width: 10, height: 6, channels: 3, pixels: [UInt8](repeating: 77, count: 180))
        #expect(ImageResize.resample(flat, width: 3, height: 7).pixels.allSatisfy { $0 == 77 })
    }

    @Test func cropAndPadFits() {
        // 4 wide × 2 high → crop to the centre 2×2 square, already the size: exact pixels.
        let image = Image8(width: 4, height: 2, channels: 1, pixels: [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(ImageResize.fit(image, size: 2, mode: .crop).pixels == [2, 3, 6, 7])
        // Pad never upscales: 28 → 32 puts the image 2 pixels in on every side.
        let small = Image8(width: 28, height: 28, channels: 1, pixels: [UInt8](repeating: 9, count: 784))
        let padded = ImageResize.fit(small, size: 32, mode: .pad)
        for y in 0..<32 {
            for x in 0..<32 {
                let inside = (2..<30).contains(x) && (2..<30).contains(y)
                #expect(padded.pixels[y * 32 + x] == (inside ? 9 : 0))
            }
        }
    }
}

@Suite struct IDXTests {
    @Test func gzippedAndPlainRoundTrip() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        for gzip in [true, false] {
            let f = Fixture.idx(in: dir, count: 6, rows: 4, cols: 3, gzip: gzip)
            let x = try IDX.read(path: f.images), y = try IDX.read(path: f.labels)
            #expect(x == IDXArray(dims: [6, 4, 3], bytes: f.pixels))
            #expect(y.dims == [6] && y.bytes.map(Int.init) == f.labelValues)
        }
    }

    @Test func malformedFilesAreErrors() throws {
        let dir = Fixture.folder()
        defer { Fixture.remove(dir) }
        let f = Fixture.idx(in: dir, count: 50, rows: 28, cols: 28, gzip: false)
        let data = try Data(contentsOf: URL(fileURLWithPath: f.images))
        FileManager.default.createFile(atPath: dir + "/cut", contents: data.prefix(1000))
        let cut = Fixture.storageError([dir + "/cut", "truncated", "984 of 39200 bytes"]) { _ = try IDX.read(path: dir + "/cut") }
        #expect(cut.0, "\(cut.1)")
        var wrongType = data
        wrongType[2] = 0x0D
        FileManager.default.createFile(atPath: dir + "/float", contents: wrongType)
        let float = Fixture.storageError(["0x0d", "expected 0x08"]) { _ = try IDX.read(path: dir + "/float") }
        #expect(float.0, "\(float.1)")
        FileManager.default.createFile(atPath: dir + "/png", contents: Data([0x89, 0x50, 0x4E, 0x47, 0, 0, 0, 0]))
        let magic = Fixture.storageError(["not an idx file"]) { _ = try IDX.read(path: dir + "/png") }
        #expect(magic.0, "\(magic.1)")
    }
}
