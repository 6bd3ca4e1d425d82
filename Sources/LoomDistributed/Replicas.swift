import LoomTensor

/// Keeping the replicas identical: broadcast at start, checksums on request.
public enum Replicas {
    /// Copies rank `root`'s values of `tensors` into every rank's tensors (in place).
    public static func broadcast(_ tensors: [Tensor], from root: Int = 0, over communicator: Communicator) throws {
        for t in tensors where t.count > 0 {
            try communicator.broadcast(t.data, count: t.count, root: root)
        }
    }

    /// A 64-bit hash of the exact bits of `tensors` (order matters).
    public static func checksum(_ tensors: [Tensor]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for t in tensors {
            h = (h ^ UInt64(t.count)) &* 0x1000_0000_01B3
            t.data.withMemoryRebound(to: UInt32.self, capacity: t.count) { words in
                // Four independent lanes keep the multiply chain short; folded at the end.
                var lanes: (UInt64, UInt64, UInt64, UInt64) = (h, h ^ 1, h ^ 2, h ^ 3)
                var i = 0
                while i + 4 <= t.count {
                    lanes.0 = (lanes.0 ^ UInt64(words[i])) &* 0x9E37_79B9_7F4A_7C15
                    lanes.1 = (lanes.1 ^ UInt64(words[i + 1])) &* 0x9E37_79B9_7F4A_7C15
                    lanes.2 = (lanes.2 ^ UInt64(words[i + 2])) &* 0x9E37_79B9_7F4A_7C15
                    lanes.3 = (lanes.3 ^ UInt64(words[i + 3])) &* 0x9E37_79B9_7F4A_7C15
                    i += 4
                }
                while i < t.count { lanes.0 = (lanes.0 ^ UInt64(words[i])) &* 0x9E37_79B9_7F4A_7C15; i += 1 }
                h = splitMix64(lanes.0 ^ splitMix64(lanes.1 ^ splitMix64(lanes.2 ^ splitMix64(lanes.3))))
            }
        }
        return h
    }

    /// Throws `DistributedError.replicasDiverged` naming the ranks and the first differing
    /// tensor when the ranks' `tensors` are not bitwise identical.
    public static func verify(_ named: [(String, Tensor)], over communicator: Communicator, what: String = "parameters") throws {
        let all = try communicator.allGather(checksum(named.map(\.1)))
        guard Set(all).count > 1 else { return }
        // Find the first tensor that differs (one more all-gather per tensor, only on failure).
        var first = "?"
        for (name, t) in named {
            if Set(try communicator.allGather(checksum([t]))).count > 1 { first = name; break }
        }
        let differing = all.indices.filter { all[$0] != all[0] }
        throw DistributedError.replicasDiverged(what: what, ranks: differing, firstTensor: first)
    }
}
