import Foundation
import Synchronization

/// The threads behind `Parallel.forRange`: workers that spin briefly between parallel regions
/// before they sleep, so a training step made of thousands of short regions (the 1 × 2 set-up)
/// does not pay a thread wake-up per region, as GCD's `concurrentPerform` does.
///
/// One region runs at a time. A region that starts while another runs (a nested `forRange`,
/// or a second thread) runs its chunks one after another on the calling thread, so the same
/// chunks give the same results either way.
final class WorkerPool: @unchecked Sendable {
    /// The pool every `Parallel.forRange` uses.
    static let shared = WorkerPool()

    /// How long an idle worker keeps looking for the next region before it sleeps.
    static let spinNanoseconds: UInt64 = 200_000

    /// The current region: generation (bits 32…), chunk count (bits 16…31), next unclaimed
    /// chunk (bits 0…15). One word, so a worker can only claim a chunk of the region it saw.
    private let state = Atomic<Int>(0)
    /// Chunks of the current region that have finished.
    private let finished = Atomic<Int>(0)
    /// Workers waiting on `wake`.
    private let sleepers = Atomic<Int>(0)
    /// Whether a region is running.
    private let busy = Atomic<Bool>(false)
    /// The current region's body (chunk index → work); written before `state` publishes it.
    private nonisolated(unsafe) var body: ((Int) -> Void)?
    private var started = 0
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
    }

    /// Runs `work(c)` for every `c` in `0..<chunks` on the caller and up to `threads − 1`
    /// workers; returns when all chunks are done.
    func run(chunks: Int, threads: Int, _ work: (Int) -> Void) {
        guard chunks > 1, chunks < 1 << 16, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for c in 0..<chunks { work(c) }
            return
        }
        startWorkers(threads - 1)
        withoutActuallyEscaping(work) { work in
            body = work
            finished.store(0, ordering: .relaxed)
            let generation = (WorkerPool.generation(of: state.load(ordering: .relaxed)) + 1) & 0x7FFF_FFFF
            state.store(generation << 32 | chunks << 16, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(&mutex)
                pthread_cond_broadcast(&wake)
                pthread_mutex_unlock(&mutex)
            }
            runChunks(of: generation)
            var spins = 0
            while finished.load(ordering: .acquiring) < chunks {
                spins += 1
                if spins > 1 << 12 { sched_yield() }
            }
            body = nil
        }
        busy.store(false, ordering: .releasing)
    }

    /// Claims and runs chunks of region `generation` until none are left.
    private func runChunks(of generation: Int) {
        while true {
            var s = state.load(ordering: .acquiring)
            var claimed = -1
            while WorkerPool.generation(of: s) == generation && s & 0xFFFF < (s >> 16) & 0xFFFF {
                let (exchanged, now) = state.compareExchange(expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
                if exchanged { claimed = s & 0xFFFF; break }
                s = now
            }
            guard claimed >= 0 else { return }
            body!(claimed)
            finished.add(1, ordering: .releasing)
        }
    }

    /// The region number in a `state` word (31 bits, wrapping).
    private static func generation(of state: Int) -> Int { (state >> 32) & 0x7FFF_FFFF }

    private func startWorkers(_ n: Int) {
        while started < n {
            started += 1
            let thread = Thread { [unowned self] in self.workerLoop() }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    private func workerLoop() {
        var seen = WorkerPool.generation(of: state.load(ordering: .acquiring))
        while true {
            let spinStart = DispatchTime.now().uptimeNanoseconds
            var generation = WorkerPool.generation(of: state.load(ordering: .acquiring))
            while generation == seen {
                if DispatchTime.now().uptimeNanoseconds - spinStart > WorkerPool.spinNanoseconds {
                    pthread_mutex_lock(&mutex)
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while WorkerPool.generation(of: state.load(ordering: .sequentiallyConsistent)) == seen {
                        pthread_cond_wait(&wake, &mutex)
                    }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    pthread_mutex_unlock(&mutex)
                }
                generation = WorkerPool.generation(of: state.load(ordering: .acquiring))
            }
            seen = generation
            runChunks(of: generation)
        }
    }
}
