// Multi-scale deformable attention, CUDA implementation of the refseg::ms_deform_attn_* ops
// (schema defined by ms_deform_attn.cpp; this unit only adds TORCH_LIBRARY_IMPL(refseg, CUDA)).
//
// One warp per (n, q, m): lanes cover channels (coalesced 32-channel row reads), the sampling
// coordinates are computed once per lane and sample. float32 accumulation (opmath) for every dtype,
// 64-bit index arithmetic, device guard, launches checked with C10_CUDA_KERNEL_LAUNCH_CHECK (raises).
// Backward: grad_loc / grad_attn are reduced inside the warp with shuffles (no atomics); grad_value is
// a scatter done with atomicAdd into an opmath buffer (non-deterministic order, reported through
// at::globalContext().alertNotDeterministic).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "ms_deform_attn_checks.h"

namespace refseg_msda {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;  // 8 warps per block

struct Corner {
  int64_t x0, y0;
  float fx, fy;
  bool inside;
};

template <typename acc_t>
__device__ __forceinline__ void locate(acc_t loc_x, acc_t loc_y, int64_t H, int64_t W, int64_t& x0, int64_t& y0,
                                       acc_t& fx, acc_t& fy, bool& inside) {
  const acc_t x = loc_x * static_cast<acc_t>(W) - acc_t(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(H) - acc_t(0.5);
  inside = x > acc_t(-1) && y > acc_t(-1) && x < static_cast<acc_t>(W) && y < static_cast<acc_t>(H);
  const acc_t xf = floor(x), yf = floor(y);
  x0 = static_cast<int64_t>(xf);
  y0 = static_cast<int64_t>(yf);
  fx = x - xf;
  fy = y - yf;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                               const scalar_t* __restrict__ attn, scalar_t* __restrict__ out, int64_t S, int64_t M,
                               int64_t D, int64_t Lq, int64_t L, int64_t P, int64_t total_warps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= total_warps) return;  // whole warps exit together
  const int64_t m = warp % M, idx = warp / M, n = idx / Lq;  // idx = n * Lq + q
  const int64_t row = M * D;
  const scalar_t* loc_w = loc + warp * L * P * 2;
  const scalar_t* attn_w = attn + warp * L * P;
  for (int64_t c = lane; c < D; c += kWarp) {
    acc_t acc = 0;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const scalar_t* v = value + (n * S + starts[l]) * row + m * D + c;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t k = l * P + p;
        int64_t x0, y0;
        acc_t fx, fy;
        bool inside;
        locate<acc_t>(static_cast<acc_t>(loc_w[2 * k]), static_cast<acc_t>(loc_w[2 * k + 1]), H, W, x0, y0, fx, fy,
                      inside);
        if (!inside) continue;
        const acc_t a = static_cast<acc_t>(attn_w[k]);
        const acc_t gx = 1 - fx, gy = 1 - fy;
        const bool x0ok = x0 >= 0, x1ok = x0 + 1 < W, y0ok = y0 >= 0, y1ok = y0 + 1 < H;
        acc_t s = 0;
        if (y0ok && x0ok) s += gy * gx * static_cast<acc_t>(v[(y0 * W + x0) * row]);
        if (y0ok && x1ok) s += gy * fx * static_cast<acc_t>(v[(y0 * W + x0 + 1) * row]);
        if (y1ok && x0ok) s += fy * gx * static_cast<acc_t>(v[((y0 + 1) * W + x0) * row]);
        if (y1ok && x1ok) s += fy * fx * static_cast<acc_t>(v[((y0 + 1) * W + x0 + 1) * row]);
        acc += a * s;
      }
    }
    out[warp * D + c] = static_cast<scalar_t>(acc);
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts, const scalar_t* __restrict__ loc,
                                const scalar_t* __restrict__ attn, const scalar_t* __restrict__ grad_out,
                                at::opmath_type<scalar_t>* __restrict__ grad_value, scalar_t* __restrict__ grad_loc,
                                scalar_t* __restrict__ grad_attn, int64_t S, int64_t M, int64_t D, int64_t Lq,
                                int64_t L, int64_t P, int64_t total_warps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= total_warps) return;
  const int64_t m = warp % M, idx = warp / M, n = idx / Lq;
  const int64_t row = M * D;
  const scalar_t* loc_w = loc + warp * L * P * 2;
  const scalar_t* attn_w = attn + warp * L * P;
  const scalar_t* g = grad_out + warp * D;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const int64_t base = (n * S + starts[l]) * row + m * D;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t k = l * P + p;
      int64_t x0, y0;
      acc_t fx, fy;
      bool inside;
      locate<acc_t>(static_cast<acc_t>(loc_w[2 * k]), static_cast<acc_t>(loc_w[2 * k + 1]), H, W, x0, y0, fx, fy,
                    inside);
      acc_t g_attn = 0, g_x = 0, g_y = 0;
      const acc_t a = static_cast<acc_t>(attn_w[k]);
      if (inside) {  // uniform across the warp
        const acc_t gx = 1 - fx, gy = 1 - fy;
        const bool x0ok = x0 >= 0, x1ok = x0 + 1 < W, y0ok = y0 >= 0, y1ok = y0 + 1 < H;
        const int64_t o00 = base + (y0 * W + x0) * row, o01 = o00 + row, o10 = o00 + W * row, o11 = o10 + row;
        for (int64_t c = lane; c < D; c += kWarp) {
          const acc_t gc = static_cast<acc_t>(g[c]);
          acc_t v00 = 0, v01 = 0, v10 = 0, v11 = 0;
          if (y0ok && x0ok) {
            v00 = static_cast<acc_t>(value[o00 + c]);
            atomicAdd(grad_value + o00 + c, a * gy * gx * gc);
          }
          if (y0ok && x1ok) {
            v01 = static_cast<acc_t>(value[o01 + c]);
            atomicAdd(grad_value + o01 + c, a * gy * fx * gc);
          }
          if (y1ok && x0ok) {
            v10 = static_cast<acc_t>(value[o10 + c]);
            atomicAdd(grad_value + o10 + c, a * fy * gx * gc);
          }
          if (y1ok && x1ok) {
            v11 = static_cast<acc_t>(value[o11 + c]);
            atomicAdd(grad_value + o11 + c, a * fy * fx * gc);
          }
          g_attn += gc * (gy * (gx * v00 + fx * v01) + fy * (gx * v10 + fx * v11));
          g_x += gc * (gy * (v01 - v00) + fy * (v11 - v10));
          g_y += gc * (gx * (v10 - v00) + fx * (v11 - v01));
        }
      }
      g_attn = warp_sum(g_attn);
      g_x = warp_sum(g_x);
      g_y = warp_sum(g_y);
      if (lane == 0) {
        grad_attn[warp * L * P + k] = static_cast<scalar_t>(g_attn);
        grad_loc[(warp * L * P + k) * 2] = static_cast<scalar_t>(a * static_cast<acc_t>(W) * g_x);
        grad_loc[(warp * L * P + k) * 2 + 1] = static_cast<scalar_t>(a * static_cast<acc_t>(H) * g_y);
      }
    }
  }
}

void check_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                const at::Tensor& loc, const at::Tensor& attn) {
  for (const at::Tensor* t : {&value, &spatial_shapes, &level_start_index, &loc, &attn})
    TORCH_CHECK(t->is_cuda() && t->device() == value.device(),
                "ms_deform_attn (CUDA): all inputs, including spatial_shapes and level_start_index, must be on ",
                value.device());
}

int64_t blocks_for(int64_t warps) { return (warps + kThreads / kWarp - 1) / (kThreads / kWarp); }

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                        const at::Tensor& sampling_locations, const at::Tensor& attention_weights, int64_t im2col_step) {
  check_cuda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard guard(value.device());
  const Problem pb =
      check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step, false);
  const at::Tensor v = value.contiguous(), ss = spatial_shapes.contiguous(), lsi = level_start_index.contiguous(),
                   loc = sampling_locations.contiguous(), attn = attention_weights.contiguous();
  at::Tensor out = at::empty({pb.batch, pb.queries, pb.heads * pb.channels}, v.options());
  const int64_t warps = pb.batch * pb.queries * pb.heads;
  if (warps == 0 || pb.channels == 0) return out.zero_();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(warps), kThreads, 0, stream>>>(
        v.const_data_ptr<scalar_t>(), ss.const_data_ptr<int64_t>(), lsi.const_data_ptr<int64_t>(),
        loc.const_data_ptr<scalar_t>(), attn.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        pb.num_values, pb.heads, pb.channels, pb.queries, pb.levels, pb.points, warps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                             const at::Tensor& level_start_index,
                                                             const at::Tensor& sampling_locations,
                                                             const at::Tensor& attention_weights,
                                                             const at::Tensor& grad_output, int64_t im2col_step) {
  check_cuda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(grad_output.is_cuda() && grad_output.device() == value.device(),
              "ms_deform_attn_backward (CUDA): grad_output must be on ", value.device());
  const c10::cuda::CUDAGuard guard(value.device());
  const Problem pb =
      check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step, false);
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == pb.batch && grad_output.size(1) == pb.queries &&
                  grad_output.size(2) == pb.heads * pb.channels,
              "ms_deform_attn_backward: grad_output must be (N, Lq, M*D), got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), "ms_deform_attn_backward: grad_output must be ",
              value.scalar_type());
  at::globalContext().alertNotDeterministic("ms_deform_attn_backward_cuda");
  const at::Tensor v = value.contiguous(), ss = spatial_shapes.contiguous(), lsi = level_start_index.contiguous(),
                   loc = sampling_locations.contiguous(), attn = attention_weights.contiguous(),
                   g = grad_output.contiguous();
  const auto acc_type = at::toOpMathType(v.scalar_type());
  at::Tensor grad_value = at::zeros(v.sizes(), v.options().dtype(acc_type));
  at::Tensor grad_loc = at::zeros(loc.sizes(), loc.options());
  at::Tensor grad_attn = at::zeros(attn.sizes(), attn.options());
  const int64_t warps = pb.batch * pb.queries * pb.heads;
  if (warps > 0 && pb.channels > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
      backward_kernel<scalar_t><<<blocks_for(warps), kThreads, 0, stream>>>(
          v.const_data_ptr<scalar_t>(), ss.const_data_ptr<int64_t>(), lsi.const_data_ptr<int64_t>(),
          loc.const_data_ptr<scalar_t>(), attn.const_data_ptr<scalar_t>(), g.const_data_ptr<scalar_t>(),
          grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>(), grad_loc.mutable_data_ptr<scalar_t>(),
          grad_attn.mutable_data_ptr<scalar_t>(), pb.num_values, pb.heads, pb.channels, pb.queries, pb.levels,
          pb.points, warps);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_value.to(v.scalar_type()), grad_loc, grad_attn};
}

}  // namespace
}  // namespace refseg_msda

TORCH_LIBRARY_IMPL(refseg, CUDA, m) {
  m.impl("ms_deform_attn_forward", &refseg_msda::forward_cuda);
  m.impl("ms_deform_attn_backward", &refseg_msda::backward_cuda);
}
