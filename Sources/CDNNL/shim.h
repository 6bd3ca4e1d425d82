#ifndef LOOM_CDNNL_SHIM_H
#define LOOM_CDNNL_SHIM_H
// Debian's libdnnl-dev (oneDNN 2.6) installs no .pc file; the header is on the default path.
#include <oneapi/dnnl/dnnl.h>
// DNNL_ARG_* are macros; the ones Loom passes are exposed as functions.
static inline int loom_dnnl_arg_src(void) { return DNNL_ARG_SRC; }
static inline int loom_dnnl_arg_dst(void) { return DNNL_ARG_DST; }
static inline int loom_dnnl_arg_weights(void) { return DNNL_ARG_WEIGHTS; }
static inline int loom_dnnl_arg_bias(void) { return DNNL_ARG_BIAS; }
static inline int loom_dnnl_arg_diff_src(void) { return DNNL_ARG_DIFF_SRC; }
static inline int loom_dnnl_arg_diff_dst(void) { return DNNL_ARG_DIFF_DST; }
static inline int loom_dnnl_arg_diff_weights(void) { return DNNL_ARG_DIFF_WEIGHTS; }
static inline int loom_dnnl_arg_diff_bias(void) { return DNNL_ARG_DIFF_BIAS; }
static inline int loom_dnnl_arg_from(void) { return DNNL_ARG_FROM; }
static inline int loom_dnnl_arg_to(void) { return DNNL_ARG_TO; }
static inline int loom_dnnl_arg_scratchpad(void) { return DNNL_ARG_SCRATCHPAD; }
static inline int loom_dnnl_arg_src_1(void) { return DNNL_ARG_SRC_1; }
static inline void *loom_dnnl_memory_allocate(void) { return DNNL_MEMORY_ALLOCATE; }
static inline void *loom_dnnl_memory_none(void) { return DNNL_MEMORY_NONE; }
#endif
