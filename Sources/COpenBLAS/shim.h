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
#endif
