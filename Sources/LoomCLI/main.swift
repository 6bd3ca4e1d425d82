// Entry point. The BLAS kernel check must run before anything else: OpenBLAS has already
// read OPENBLAS_CORETYPE when `main` starts, so fixing it means starting again.
Launch.ensureStrongBLASKernel()
LoomCommand.main()
