/* cublas_v2.h for kernels run on the CPU: the real header's types and
 * declarations as a host compiler sees them, then the emulation. */
#include_next <cublas_v2.h>
#include "cudaemu.h"
