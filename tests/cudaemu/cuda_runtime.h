/* cuda_runtime.h for kernels run on the CPU (cudaemu.h). */
#include "cudaemu.h"
