#ifndef LOOM_COPENBLAS_SHIM_H
#define LOOM_COPENBLAS_SHIM_H
// cblas.h comes from openblas.pc's include folder (openblas-pthread on Debian).
#include <cblas.h>
#endif
