// Input validation shared by the CPU (ms_deform_attn.cpp) and CUDA (ms_deform_attn_cuda.cu) ops.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#include "ms_deform_attn_cpu.h"

namespace refseg_msda {

// Validates the Deformable-DETR layouts and fills the problem sizes. spatial_shapes and
// level_start_index must already be contiguous int64 CPU tensors when `read_shapes` is true.
inline Problem check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
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

}  // namespace refseg_msda
