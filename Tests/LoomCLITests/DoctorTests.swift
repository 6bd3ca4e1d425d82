import Foundation
import LoomTensor
import Testing

@Suite(.serialized) struct DoctorTests {
    @Test func versionAndLibraries() throws {
        let v = try LoomBinary.loom(["--version"])
        #expect(v.status == 0)
        #expect(v.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3)

        let r = try LoomBinary.loom(["doctor", "--no-bench"])
        #expect(r.status == 0, "\(r.stderr)")
        for name in ["openmpi   Open MPI v4", "openblas  core", "onednn    2.", "hdf5      1.", "libpng    1.6"] {
            #expect(r.stdout.contains(name), "doctor output lacks \(name):\n\(r.stdout)")
        }
    }

    @Test func missingToolIsAClearErrorAndNonZeroExit() throws {
        // A PATH without mpirun and h5dump: doctor must name both and fail.
        let r = try LoomBinary.loom(["doctor", "--no-bench"], environment: ["PATH": "/nonexistent"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("missing: mpirun is not on PATH (Debian package openmpi-bin"))
        #expect(r.stderr.contains("missing: h5dump is not on PATH (Debian package hdf5-tools"))
        #expect(!r.stderr.contains("Fatal error"))
    }

    @Test(arguments: [2, 4]) func everyRankAnswersUnderMPI(ranks: Int) throws {
        let r = try LoomBinary.mpirun(ranks: ranks, ["doctor", "--mpi", "--no-bench"])
        #expect(r.status == 0, "\(r.stderr)")
        for rank in 0..<ranks {
            #expect(r.stdout.contains("rank \(rank) of \(ranks) "), "rank \(rank) did not answer:\n\(r.stdout)")
        }
        let sum = ranks * (ranks - 1) / 2
        #expect(r.stdout.contains("all-reduce of rank ids over \(ranks) ranks: \(sum) (expected \(sum))"))
        #expect(r.stdout.contains("openmpi   Open MPI"))
    }

    @Test func weakBLASKernelIsReplacedAtStart() throws {
        guard let best = BLASKernel.strongestForThisCPU(), best != "Haswell" else { return }
        let r = try LoomBinary.loom(["doctor", "--no-bench"], environment: ["OPENBLAS_CORETYPE": "Haswell"])
        #expect(r.status == 0)
        #expect(r.stderr.contains("OPENBLAS_CORETYPE=Haswell forces a weaker BLAS kernel"))
        #expect(r.stdout.contains("openblas  core \(best)"), "\(r.stdout)")
        // Opting out keeps the weak kernel and says so in the report.
        let kept = try LoomBinary.loom(["doctor", "--no-bench"],
                                       environment: ["OPENBLAS_CORETYPE": "Haswell", "LOOM_KEEP_OPENBLAS_CORETYPE": "1"])
        #expect(kept.stdout.contains("openblas  core Haswell"))
        #expect(kept.stdout.contains("warning: this CPU runs the \(best) kernel"))
    }
}

@Suite struct BLASKernelTests {
    let zen5Flags = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni\n"

    @Test func detectsKernelFromFlags() {
        #expect(BLASKernel.strongestForThisCPU(cpuinfo: zen5Flags) == "Cooperlake")
        #expect(BLASKernel.strongestForThisCPU(cpuinfo: "flags : sse2 avx avx2 fma\n") == "Haswell")
        #expect(BLASKernel.strongestForThisCPU(cpuinfo: "flags : sse2\n") == nil)
    }

    @Test func upgradesOnlyWeakerKnownKernels() {
        #expect(BLASKernel.upgrade(requested: "Haswell", strongest: "Cooperlake") == "Cooperlake")
        #expect(BLASKernel.upgrade(requested: "zen", strongest: "SkylakeX") == "SkylakeX")
        #expect(BLASKernel.upgrade(requested: "SkylakeX", strongest: "SkylakeX") == nil)
        #expect(BLASKernel.upgrade(requested: "Cooperlake", strongest: "SkylakeX") == nil)
        #expect(BLASKernel.upgrade(requested: nil, strongest: "Cooperlake") == nil)
        #expect(BLASKernel.upgrade(requested: "SomethingNew", strongest: "Cooperlake") == nil)
    }
}
