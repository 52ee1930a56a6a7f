// CPU kernels compiled for the "base" instruction set (flags chosen by refseg/kernels/build.py).
#define REFSEG_MSDA_ISA base
#include "ms_deform_attn_cpu_kernel.h"
