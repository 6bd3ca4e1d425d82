import Foundation
import Synchronization
import Testing
import LoomTensor

/// `Parallel.forRange` on its worker pool: every index runs exactly once, in the chunks the
/// thread count fixes, whether regions follow each other quickly, nest, or start from several
/// threads at once.
@Suite struct ParallelTests {
    /// Runs `regions` regions of varying sizes and counts how often each index ran.
    private func visitCounts(regions: Int, nested: Bool) -> [Int] {
        var total = 0
        var sizes: [Int] = []
        for r in 0..<regions { sizes.append(1 + (r * 7919) % 300); total += sizes.last! }
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: total)
        counts.initialize(repeating: 0, count: total)
        defer { counts.deallocate() }
        var base = 0
        for n in sizes {
            let b = base
            Parallel.forRange(n, grain: 8) { range in
                if nested {
                    // A region inside a region runs its chunks on the calling thread.
                    Parallel.forRange(range.count, grain: 1) { inner in
                        for i in inner { counts[b + range.lowerBound + i] += 1 }
                    }
                } else {
                    for i in range { counts[b + i] += 1 }
                }
            }
            base += n
        }
        return Array(UnsafeBufferPointer(start: counts, count: total))
    }

    @Test func everyIndexRunsOnceAtTwoThreads() {
        let counts = Parallel.withThreads(2) { visitCounts(regions: 20_000, nested: false) }
        #expect(counts.allSatisfy { $0 == 1 }, "\(counts.filter { $0 != 1 }.count) indices ran other than once")
    }

    @Test func nestedRegionsRunInline() {
        let counts = Parallel.withThreads(2) { visitCounts(regions: 2_000, nested: true) }
        #expect(counts.allSatisfy { $0 == 1 })
    }

    /// Four threads start regions at the same time (one runs on the pool, the others run
    /// their chunks inline); every region still sums every index once.
    @Test func regionsFromSeveralThreadsAtOnce() {
        let sums = Mutex<[Int]>([])
        Parallel.withThreads(2) {
            DispatchQueue.concurrentPerform(iterations: 4) { caller in
                var mine = 0
                for _ in 0..<500 {
                    let n = 64 + caller
                    let partial = UnsafeMutablePointer<Int>.allocate(capacity: n)
                    partial.initialize(repeating: 0, count: n)
                    Parallel.forRange(n, grain: 4) { range in for i in range { partial[i] = i + 1 } }
                    mine += (0..<n).reduce(0) { $0 + partial[$1] }
                    partial.deallocate()
                }
                sums.withLock { $0.append(mine / 500 - (64 + caller) * (65 + caller) / 2) }
            }
        }
        #expect(sums.withLock { $0 } == [0, 0, 0, 0])
    }
}
