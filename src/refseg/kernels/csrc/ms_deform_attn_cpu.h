// Multi-scale deformable attention, CPU kernels: declarations shared by the per-ISA translation units
// (ms_deform_attn_cpu_{base,avx2,avx512}.cpp) and the registration unit (ms_deform_attn.cpp).
// Deliberately free of torch headers so each ISA unit can be compiled with its own -m flags without
// emitting shared inline (COMDAT) code that another unit might pick up.
#pragma once

#include <cstdint>

namespace refseg_msda {

// Problem sizes, Deformable-DETR layouts:
//   value (N, S, M, D), sampling_locations (N, Lq, M, L, P, 2), attention_weights (N, Lq, M, L, P),
//   output (N, Lq, M * D). shapes points at L rows (H_l, W_l), starts at the L level offsets in S.
struct Problem {
  int64_t batch;       // N
  int64_t num_values;  // S
  int64_t heads;       // M
  int64_t channels;    // D
  int64_t queries;     // Lq
  int64_t levels;      // L
  int64_t points;      // P
  const int64_t* shapes;
  const int64_t* starts;
};

// forward: fills out for flat (n, q) indices in [begin, end).
// backward: one task per flat (n, m) index in [begin, end); task (n, m) owns grad_value[n, :, m, :] and
// the grad_loc / grad_attn entries of head m, so no two tasks write the same memory (no atomics,
// deterministic). grad_value must be zero-initialised; grad_loc and grad_attn are fully written.
template <typename T>
using ForwardFn = void (*)(const Problem&, const T* value, const T* loc, const T* attn, T* out, int64_t begin,
                           int64_t end);
template <typename T>
using BackwardFn = void (*)(const Problem&, const T* value, const T* loc, const T* attn, const T* grad_out,
                            T* grad_value, T* grad_loc, T* grad_attn, int64_t begin, int64_t end);

struct KernelTable {
  const char* isa;
  ForwardFn<float> forward_f32;
  ForwardFn<double> forward_f64;
  BackwardFn<float> backward_f32;
  BackwardFn<double> backward_f64;
};

extern const KernelTable kernels_base;
#if defined(__x86_64__) || defined(_M_X64)
extern const KernelTable kernels_avx2;
extern const KernelTable kernels_avx512;
#endif

}  // namespace refseg_msda
