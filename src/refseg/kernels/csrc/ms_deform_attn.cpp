// Multi-scale deformable attention custom ops: schema (TORCH_LIBRARY refseg), input checks and the CPU
// implementation (at::parallel_for over independent work; per-ISA kernels chosen at load time).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <string>

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

// Validates the Deformable-DETR layouts and fills the problem sizes. spatial_shapes and
// level_start_index must already be contiguous int64 CPU tensors when `read_shapes` is true.
Problem check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                     const at::Tensor& loc, const at::Tensor& attn, int64_t im2col_step, bool read_shapes) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be 4-D (N, S, M, D), got shape ", value.sizes());
  TORCH_CHECK(loc.dim() == 6, "ms_deform_attn: sampling_locations must be 6-D (N, Lq, M, L, P, 2), got shape ",
              loc.sizes());
  TORCH_CHECK(attn.dim() == 5, "ms_deform_attn: attention_weights must be 5-D (N, Lq, M, L, P), got shape ",
              attn.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be (L, 2), got shape ", spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1, "ms_deform_attn: level_start_index must be 1-D (L,), got shape ",
              level_start_index.sizes());
  const auto dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf,
              "ms_deform_attn: value must be float32, float64, bfloat16 or float16, got ", dtype);
  TORCH_CHECK(loc.scalar_type() == dtype && attn.scalar_type() == dtype,
              "ms_deform_attn: sampling_locations and attention_weights must have value's dtype ", dtype, ", got ",
              loc.scalar_type(), " and ", attn.scalar_type());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64, got ", spatial_shapes.scalar_type(),
              " and ", level_start_index.scalar_type());
  Problem pb{};
  pb.batch = value.size(0);
  pb.num_values = value.size(1);
  pb.heads = value.size(2);
  pb.channels = value.size(3);
  pb.queries = loc.size(1);
  pb.levels = loc.size(3);
  pb.points = loc.size(4);
  TORCH_CHECK(loc.size(0) == pb.batch && loc.size(2) == pb.heads && loc.size(5) == 2,
              "ms_deform_attn: sampling_locations must be (N=", pb.batch, ", Lq, M=", pb.heads, ", L, P, 2), got ",
              loc.sizes());
  TORCH_CHECK(attn.sizes() == loc.sizes().slice(0, 5), "ms_deform_attn: attention_weights must be ",
              loc.sizes().slice(0, 5), " to match sampling_locations, got ", attn.sizes());
  TORCH_CHECK(spatial_shapes.size(0) == pb.levels && level_start_index.size(0) == pb.levels,
              "ms_deform_attn: spatial_shapes and level_start_index must have L=", pb.levels,
              " rows (from sampling_locations), got ", spatial_shapes.size(0), " and ", level_start_index.size(0));
  TORCH_CHECK(im2col_step > 0, "ms_deform_attn: im2col_step must be positive, got ", im2col_step);
  const int64_t step = std::min<int64_t>(pb.batch, im2col_step);
  TORCH_CHECK(pb.batch == 0 || pb.batch % step == 0, "ms_deform_attn: batch (", pb.batch,
              ") must be divisible by im2col_step (", step, ")");
  TORCH_CHECK(value.device() == loc.device() && value.device() == attn.device(),
              "ms_deform_attn: value, sampling_locations and attention_weights must be on one device, got ",
              value.device(), ", ", loc.device(), ", ", attn.device());
  if (read_shapes) {
    const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
    const int64_t* starts = level_start_index.data_ptr<int64_t>();
    int64_t total = 0;
    for (int64_t l = 0; l < pb.levels; ++l) {
      TORCH_CHECK(shapes[2 * l] > 0 && shapes[2 * l + 1] > 0, "ms_deform_attn: level ", l,
                  " has a non-positive spatial shape (", shapes[2 * l], ", ", shapes[2 * l + 1], ")");
      TORCH_CHECK(starts[l] == total, "ms_deform_attn: level_start_index[", l, "] = ", starts[l],
                  " but the levels before it hold ", total, " values");
      total += shapes[2 * l] * shapes[2 * l + 1];
    }
    TORCH_CHECK(total == pb.num_values, "ms_deform_attn: value has S=", pb.num_values,
                " but spatial_shapes sum to ", total);
    pb.shapes = shapes;
    pb.starts = starts;
  }
  return pb;
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
