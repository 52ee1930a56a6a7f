// CPU kernels compiled for the "avx2" instruction set (flags chosen by refseg/kernels/build.py).
#define REFSEG_MSDA_ISA avx2
#include "ms_deform_attn_cpu_kernel.h"
