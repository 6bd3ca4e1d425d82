#ifndef LOOM_CMPI_SHIM_H
#define LOOM_CMPI_SHIM_H
#include <mpi.h>
// MPI handles are macros over incomplete structs; Swift cannot import them, so each one
// Loom uses is exposed through an accessor (values are never guessed).
static inline MPI_Comm loom_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm loom_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype loom_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype loom_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype loom_mpi_int(void) { return MPI_INT; }
static inline MPI_Datatype loom_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype loom_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype loom_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op loom_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op loom_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op loom_mpi_min(void) { return MPI_MIN; }
static inline void *loom_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *loom_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *loom_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Request loom_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Info loom_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Errhandler loom_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int loom_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int loom_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int loom_mpi_max_library_version_string(void) { return MPI_MAX_LIBRARY_VERSION_STRING; }
#endif
