#ifndef LOOM_CPNG_SHIM_H
#define LOOM_CPNG_SHIM_H
#include <png.h>
static inline const char *loom_png_header_version(void) { return PNG_LIBPNG_VER_STRING; }
#endif
