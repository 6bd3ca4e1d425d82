// Entry point. The CPU check comes first (a binary built for another kind of CPU must stop
// before it runs an instruction this one lacks); then the BLAS kernel check: OpenBLAS has
// already read OPENBLAS_CORETYPE when `main` starts, so fixing it means starting again.
Launch.ensureCPUHasBuildFeatures()
Launch.ensureStrongBLASKernel()
LoomCommand.runReportingErrorsInOneLine()
