#ifndef LOOM_CHDF5_SHIM_H
#define LOOM_CHDF5_SHIM_H
#include <hdf5.h>
// HDF5's type and property ids expand to (H5open(), X_g); the _g globals are -1 before
// H5open() and Swift 6 rejects them as shared mutable state. Each is wrapped here.
static inline hid_t loom_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t loom_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t loom_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t loom_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t loom_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t loom_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t loom_h5t_std_u8le(void) { return H5T_STD_U8LE; }
static inline hid_t loom_h5t_std_i64le(void) { return H5T_STD_I64LE; }
static inline hid_t loom_h5t_std_i32le(void) { return H5T_STD_I32LE; }
static inline hid_t loom_h5t_std_u64le(void) { return H5T_STD_U64LE; }
static inline hid_t loom_h5t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t loom_h5t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
static inline hid_t loom_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t loom_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t loom_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t loom_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t loom_h5p_dataset_access(void) { return H5P_DATASET_ACCESS; }
static inline hid_t loom_h5p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t loom_h5s_all(void) { return H5S_ALL; }
static inline unsigned loom_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned loom_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned loom_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned loom_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline size_t loom_h5t_variable(void) { return H5T_VARIABLE; }
// File access for new files in the 1.10 format (superblock v3, v2 object headers, fixed-array
// chunk indexes): every object header and chunk index carries a checksum, so damage there is
// refused instead of misread. (The 1.8 format's chunk B-trees have none: ReaderFuzzTests found
// a flipped bit there that silently swapped two chunks, each with a valid Fletcher-32.)
static inline hid_t loom_h5p_file_access_checksummed(void) {
    hid_t p = H5Pcreate(H5P_FILE_ACCESS);
    if (p >= 0 && H5Pset_libver_bounds(p, H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0) { H5Pclose(p); return -1; }
    return p;
}
// File creation properties without modification times in object headers (the root group's
// header would otherwise record the second it was written): the same content gives the same bytes.
static inline hid_t loom_h5p_file_create_untimed(void) {
    hid_t p = H5Pcreate(H5P_FILE_CREATE);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) { H5Pclose(p); return -1; }
    return p;
}
#endif
