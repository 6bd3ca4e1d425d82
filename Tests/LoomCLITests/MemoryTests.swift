import Foundation
import Testing

@Suite struct MemoryTests {
    @Test func steadyStateTrainingStepsNeitherAllocateNorGrow() throws {
        let r = try LoomBinary.loom(["selftest", "memory", "--steps", "8"])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = r.stdout.split(separator: "\n").compactMap { line -> (Int, Int)? in
            let f = line.split(separator: " ")
            guard f.count == 6, let a = Int(f[3]), let live = Int(f[5]) else { return nil }
            return (a, live)
        }
        #expect(rows.count == 8)
        // After three warm-up steps: no new system allocations, the same live bytes.
        let steady = rows.dropFirst(3)
        #expect(Set(steady.map(\.0)).count == 1, "allocations kept growing: \(rows.map(\.0))")
        #expect(Set(steady.map(\.1)).count == 1, "live bytes changed: \(rows.map(\.1))")
    }
}
