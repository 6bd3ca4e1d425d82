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

    /// A kernel weaker than this CPU's strongest is replaced: Haswell on an AVX-512 CPU, Prescott
    /// (SSE3) on an AVX2 one, so the test runs on every CPU the build supports. A CPU without
    /// AVX2 and FMA (no strong kernel at all) fails it: Loom's speed targets assume one.
    @Test func weakBLASKernelIsReplacedAtStart() throws {
        let best = try #require(BLASKernel.strongestForThisCPU(), "this CPU has no AVX2/FMA: no OpenBLAS kernel Loom accepts")
        let weak = best == "Haswell" ? "Prescott" : "Haswell"
        let r = try LoomBinary.loom(["doctor", "--no-bench"], environment: ["OPENBLAS_CORETYPE": weak])
        #expect(r.status == 0)
        #expect(r.stderr.contains("OPENBLAS_CORETYPE=\(weak) forces a weaker BLAS kernel"), "\(r.stderr)")
        #expect(r.stdout.contains("openblas  core \(best)"), "\(r.stdout)")
        // Opting out keeps the weak kernel and says so in the report.
        let kept = try LoomBinary.loom(["doctor", "--no-bench"],
                                       environment: ["OPENBLAS_CORETYPE": weak, "LOOM_KEEP_OPENBLAS_CORETYPE": "1"])
        #expect(kept.stdout.contains("openblas  core \(weak)"), "\(kept.stdout)")
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

    /// An Intel Xeon (family 6, model 207) that OpenBLAS 0.3.21 does not know: with the variable
    /// unset it falls back to Prescott; the decision must be the strong kernel.
    @Test func unknownCPUsFallbackKernelIsUpgraded() throws {
        let xeon = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n" + zen5Flags
        let best = try #require(BLASKernel.strongestForThisCPU(cpuinfo: xeon))
        let d = try #require(BLASKernel.decide(variable: nil, detected: "Prescott", strongest: best))
        #expect(d.kernel == "Cooperlake")
        #expect(d.reason.contains("picked its Prescott kernel"))
        #expect(BLASKernel.decide(variable: "", detected: "Prescott", strongest: best)?.kernel == "Cooperlake")
        // A weak variable still wins over what OpenBLAS detected; a strong pick is left alone.
        #expect(BLASKernel.decide(variable: "Haswell", detected: "Haswell", strongest: best)?.reason.contains("OPENBLAS_CORETYPE=Haswell") == true)
        #expect(BLASKernel.decide(variable: nil, detected: "Cooperlake", strongest: best) == nil)
        #expect(BLASKernel.decide(variable: nil, detected: "SkylakeX", strongest: "SkylakeX") == nil)
        #expect(BLASKernel.decide(variable: nil, detected: "Prescott", strongest: nil) == nil)
    }

    /// The same decision end to end: OPENBLAS_CORETYPE=Prescott stands in for OpenBLAS's own
    /// fallback pick (both load the Prescott kernel); doctor then reports the strong kernel.
    @Test func doctorReportsTheStrongKernelAfterAFallbackPick() throws {
        let best = try #require(BLASKernel.strongestForThisCPU(), "this CPU has no AVX2/FMA: no OpenBLAS kernel Loom accepts")
        let r = try LoomBinary.loom(["doctor", "--no-bench"], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("openblas  core \(best)"), "\(r.stdout)")
    }
}

/// A binary built for one kind of CPU refuses, in one line, to run on a CPU without its
/// instructions (instead of SIGILL).
@Suite struct CPUFeatureTests {
    let skylakeFlags = "flags\t\t: fpu sse2 avx avx2 fma bmi1 bmi2 f16c movbe avx512f avx512cd avx512bw avx512dq avx512vl\n"
    let haswellFlags = "flags\t\t: fpu sse2 avx avx2 fma bmi1 bmi2 f16c movbe\n"

    @Test func missingFeaturesAreNamed() {
        #expect(CPUFeatures.missing(for: "skylake-avx512", cpuinfo: skylakeFlags) == [])
        #expect(CPUFeatures.missing(for: "skylake-avx512", cpuinfo: haswellFlags) == ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"])
        #expect(CPUFeatures.missing(for: "znver4", cpuinfo: skylakeFlags).starts(with: ["avx512_bf16", "avx512ifma"]))
        #expect(CPUFeatures.missing(for: nil, cpuinfo: "flags : sse2\n") == [])
        #expect(CPUFeatures.refusal(target: "haswell", missing: []) == nil)
        let line = CPUFeatures.refusal(target: "znver4", missing: ["avx512_bf16"])!
        #expect(line.contains("built for znver4 CPUs and this CPU lacks avx512_bf16") && line.contains("LOOM_TARGET_CPU=x86-64"))
    }

    /// End to end: the binary, told it runs on a CPU without the build's instructions, stops
    /// with that one line and exit 1 before doing anything.
    @Test func binaryRefusesACPUWithoutItsInstructions() throws {
        let file = Fixture.folder("cpuinfo") + "/cpuinfo"
        try "processor : 0\nflags\t\t: fpu sse sse2\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try LoomBinary.loom(["doctor", "--no-bench"], environment: ["LOOM_CPUINFO": file])
        guard let target = CPUFeatures.buildTarget else {
            // A portable build (LOOM_TARGET_CPU=x86-64) runs on that CPU too.
            #expect(r.status == 0 && !r.stderr.contains("this CPU lacks"), "\(r.stderr)")
            return
        }
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("built for \(target) CPUs and this CPU lacks avx"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
}

