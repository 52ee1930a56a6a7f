// Multi-scale deformable attention custom ops: schema (TORCH_LIBRARY refseg), input checks and the CPU
// implementation (at::parallel_for over independent work; per-ISA kernels chosen at load time).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "ms_deform_attn_checks.h"
#include "ms_deform_attn_cpu.h"

namespace refseg_msda {
namespace {

const KernelTable& select_kernels() {
  const char* forced = std::getenv("REFSEG_KERNELS_ISA");
  const std::string want = forced ? forced : "";
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const bool has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("fma");
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (want == "base") return kernels_base;
  if (want == "avx2" && has_avx2) return kernels_avx2;
  if ((want.empty() || want == "avx512") && has_avx512) return kernels_avx512;
  if (has_avx2) return kernels_avx2;
#endif
  return kernels_base;
}

const KernelTable& kernels() {
  static const KernelTable& table = select_kernels();
  return table;
}

at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations, const at::Tensor& attention_weights, int64_t im2col_step) {
  TORCH_CHECK(value.device().is_cpu() && spatial_shapes.device().is_cpu() && level_start_index.device().is_cpu(),
              "ms_deform_attn_forward (CPU): all inputs must be CPU tensors");
  const at::Tensor shapes = spatial_shapes.contiguous(), starts = level_start_index.contiguous();
  const Problem pb = check_inputs(value, shapes, starts, sampling_locations, attention_weights, im2col_step, true);
  // bfloat16 / float16 are read once into float32: float32 accumulation throughout, one rounding at the end.
  const auto ct = compute_type(value.scalar_type());
  const at::Tensor v = value.to(ct).contiguous(), loc = sampling_locations.to(ct).contiguous(),
                   attn = attention_weights.to(ct).contiguous();
  at::Tensor out = at::empty({pb.batch, pb.queries, pb.heads * pb.channels}, v.options());
  const int64_t work = pb.batch * pb.queries;
  if (work > 0 && pb.heads * pb.channels > 0) {
    const KernelTable& k = kernels();
    at::parallel_for(0, work, 16, [&](int64_t begin, int64_t end) {
      if (ct == at::kDouble)
        k.forward_f64(pb, v.const_data_ptr<double>(), loc.const_data_ptr<double>(), attn.const_data_ptr<double>(),
                      out.mutable_data_ptr<double>(), begin, end);
      else
        k.forward_f32(pb, v.const_data_ptr<float>(), loc.const_data_ptr<float>(), attn.const_data_ptr<float>(),
                      out.mutable_data_ptr<float>(), begin, end);
    });
  } else {
    out.zero_();
  }
  return out.to(value.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                            const at::Tensor& level_start_index,
                                                            const at::Tensor& sampling_locations,
                                                            const at::Tensor& attention_weights,
                                                            const at::Tensor& grad_output, int64_t im2col_step) {
  TORCH_CHECK(value.device().is_cpu() && spatial_shapes.device().is_cpu() && level_start_index.device().is_cpu() &&
                  grad_output.device().is_cpu(),
              "ms_deform_attn_backward (CPU): all inputs must be CPU tensors");
  const at::Tensor shapes = spatial_shapes.contiguous(), starts = level_start_index.contiguous();
  const Problem pb = check_inputs(value, shapes, starts, sampling_locations, attention_weights, im2col_step, true);
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == pb.batch && grad_output.size(1) == pb.queries &&
                  grad_output.size(2) == pb.heads * pb.channels,
              "ms_deform_attn_backward: grad_output must be (N, Lq, M*D) = (", pb.batch, ", ", pb.queries, ", ",
              pb.heads * pb.channels, "), got ", grad_output.sizes());
  const auto ct = compute_type(value.scalar_type());
  const at::Tensor v = value.to(ct).contiguous(), loc = sampling_locations.to(ct).contiguous(),
                   attn = attention_weights.to(ct).contiguous(), g = grad_output.to(ct).contiguous();
  at::Tensor grad_value = at::zeros(v.sizes(), v.options());
  at::Tensor grad_loc = at::zeros(loc.sizes(), loc.options());
  at::Tensor grad_attn = at::zeros(attn.sizes(), attn.options());
  const int64_t tasks = pb.batch * pb.heads;
  if (tasks > 0 && pb.queries > 0 && pb.channels > 0) {
    const KernelTable& k = kernels();
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      if (ct == at::kDouble)
        k.backward_f64(pb, v.const_data_ptr<double>(), loc.const_data_ptr<double>(), attn.const_data_ptr<double>(),
                       g.const_data_ptr<double>(), grad_value.mutable_data_ptr<double>(),
                       grad_loc.mutable_data_ptr<double>(), grad_attn.mutable_data_ptr<double>(), begin, end);
      else
        k.backward_f32(pb, v.const_data_ptr<float>(), loc.const_data_ptr<float>(), attn.const_data_ptr<float>(),
                       g.const_data_ptr<float>(), grad_value.mutable_data_ptr<float>(),
                       grad_loc.mutable_data_ptr<float>(), grad_attn.mutable_data_ptr<float>(), begin, end);
    });
  }
  const auto dt = value.scalar_type();
  return {grad_value.to(dt), grad_loc.to(dt), grad_attn.to(dt)};
}

}  // namespace
}  // namespace refseg_msda

TORCH_LIBRARY(refseg, m) {
  m.def(
      "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, int im2col_step) -> Tensor");
  m.def(
      "ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output, int im2col_step) "
      "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(refseg, CPU, m) {
  m.impl("ms_deform_attn_forward", &refseg_msda::forward_cpu);
  m.impl("ms_deform_attn_backward", &refseg_msda::backward_cpu);
}

// Which ISA variant the CPU kernels run (read with ctypes by refseg.kernels.implementation()).
extern "C" const char* refseg_msda_cpu_isa() { return refseg_msda::kernels().isa; }
