#ifndef LOOM_COPENBLAS_SHIM_H
#define LOOM_COPENBLAS_SHIM_H
// cblas.h comes from openblas.pc's include folder (openblas-pthread on Debian).
#include <cblas.h>
#include <stddef.h>

// LAPACK's single-precision SVD, which libopenblas exports (Debian ships no LAPACK header
// with it). Fortran calling convention: every argument by pointer, column-major matrices,
// and gfortran's hidden lengths of the two character arguments at the end.
void sgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, float *a, const int *lda,
             float *s, float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork,
             int *info, size_t jobu_len, size_t jobvt_len);

// LAPACK's symmetric eigen-decomposition (divide and conquer), double and single precision,
// also exported by libopenblas: the Fréchet distance's matrix square roots.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
             float *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);
#endif
