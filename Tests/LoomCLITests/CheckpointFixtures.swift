import Foundation
import LoomStorage
import LoomTensor

/// Small checkpoint states with every kind of value a real one holds.
enum CheckpointFixture {
    /// A tensor of `shape` with distinct values from `seed`.
    static func tensor(_ shape: [Int], seed: UInt64) -> Tensor {
        let t = Tensor(uninitialized: shape)
        var stream = RandomStream(key: seed)
        stream.fillNormal(t.data, count: t.count)
        return t
    }

    /// A full state: two networks (with a scalar, an empty tensor and special float bit
    /// patterns), an optimizer, RNG for `worldSize` ranks, unicode strings and extreme integers.
    static func state(step: Int = 1234, worldSize: Int = 3, seed: UInt64 = 1) -> CheckpointState {
        let weight = tensor([4, 3, 3, 3], seed: seed)
        // NaN with a payload, -0, ±inf, the smallest subnormal: bits must survive as they are.
        let special = Tensor([Float(bitPattern: 0x7FC0_1234), -0.0, .infinity, -.infinity, Float(bitPattern: 1), 1e-38],
                             shape: [2, 3])
        // Names deliberately not in name order: the written order must come back.
        let model: [(String, Tensor)] = [("conv.weight", weight), ("conv.bias", tensor([4], seed: seed + 1)),
                                         ("norm.special", special), ("bn.num_batches_tracked", Tensor.scalar(7)),
                                         ("empty", Tensor.zeros([0, 5])), ("a.linear.weight", tensor([5, 4], seed: seed + 2))]
        let ema = model.map { ($0.0, $0.1.copy()) }
        for i in 0..<ema[0].1.count { ema[0].1.data[i] *= 0.5 }
        let adam: [(String, Tensor)] = [("state.conv.weight.step", Tensor.scalar(Float(step))),
                                        ("state.conv.weight.exp_avg", tensor([4, 3, 3, 3], seed: seed + 3)),
                                        ("state.conv.weight.exp_avg_sq", tensor([4, 3, 3, 3], seed: seed + 4))]
        return CheckpointState(
            networks: [(name: "model", tensors: model), (name: "ema", tensors: ema)],
            optimizers: [(name: "adam", tensors: adam), (name: "unused", tensors: [])],
            step: step, epoch: 7, cursor: DataCursor(epoch: 7, position: 4096),
            counters: ["ema_updates": step, "grad_accum_position": 1, "big": Int.max - 1, "negative": -5],
            rng: ["noise": (0..<worldSize).map { RandomStream(key: UInt64.max - UInt64($0), counter: UInt64(1) << 63 | UInt64($0)) },
                  "dropout": (0..<worldSize).map { RandomStream(key: UInt64($0) * 77, counter: 0) }],
            configYAML: "model:\n  name: ddpm-unet-s  # größe ✓\n  lr: 0.000123\nbatch: 64\n",
            loomVersion: "0.1.0-test", worldSize: worldSize,
            datasetChecksums: ["train": "xxh64:0123456789abcdef", "val/test": "xxh64:fedcba9876543210"],
            metadata: ["note": "ünïcödé \"quoted\" / slashed", "empty": ""])
    }

    /// Flips every bit of the byte at `offset` of `path`.
    static func flipByte(_ path: String, at offset: Int) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[offset] ^= 0xFF
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// The offset of the first occurrence of `pattern` in `path`'s bytes.
    static func offset(of pattern: [UInt8], in path: String) throws -> Int? {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard data.count >= pattern.count else { return nil }
        for i in 0...(data.count - pattern.count) where data[i] == pattern[0] && Array(data[i..<(i + pattern.count)]) == pattern {
            return i
        }
        return nil
    }

    /// The file byte range of dataset `name`'s single chunk.
    static func chunkRange(_ path: String, group: String, dataset name: String) throws -> Range<Int> {
        let f = try H5File.open(path)
        defer { f.close() }
        return try f.root.openGroup(group).openDataset(name).chunkByteRange(0)
    }
}
