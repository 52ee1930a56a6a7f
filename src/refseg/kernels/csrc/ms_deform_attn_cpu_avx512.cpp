// CPU kernels compiled for the "avx512" instruction set (flags chosen by refseg/kernels/build.py).
#define REFSEG_MSDA_ISA avx512
#include "ms_deform_attn_cpu_kernel.h"
