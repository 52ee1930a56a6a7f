// Multi-scale deformable attention CPU kernel bodies (Deformable DETR, arXiv 2010.04159, eq. 3).
// Included once per ISA unit with REFSEG_MSDA_ISA set to a namespace name; everything lives in that
// namespace and uses no library templates, so the units cannot share code compiled for another ISA.
//
// Sampling convention (identical to grid_sample(align_corners=False, padding_mode="zeros") and the
// reference CUDA kernel): x = loc_x * W - 0.5, y = loc_y * H - 0.5; a sample is skipped unless
// -1 < x < W and -1 < y < H; corners outside the map contribute zero.
#include "ms_deform_attn_cpu.h"

#ifndef REFSEG_MSDA_ISA
#error "define REFSEG_MSDA_ISA before including this file"
#endif

namespace refseg_msda {
namespace REFSEG_MSDA_ISA {
namespace {

inline int64_t floor_to_int(double v) {
  int64_t i = static_cast<int64_t>(v);
  return i > v ? i - 1 : i;
}

// Coordinates and corner weights of one sample; the attention weight is folded in by the caller.
template <typename T>
struct Bilinear {
  int64_t x0, y0;
  T fx, fy;         // fractional parts
  bool inside;      // -1 < x < W and -1 < y < H
  bool interior;    // all four corners inside the map
};

template <typename T>
inline Bilinear<T> locate(T loc_x, T loc_y, int64_t height, int64_t width) {
  Bilinear<T> b;
  const T x = loc_x * static_cast<T>(width) - T(0.5);
  const T y = loc_y * static_cast<T>(height) - T(0.5);
  b.inside = x > T(-1) && y > T(-1) && x < static_cast<T>(width) && y < static_cast<T>(height);
  if (!b.inside) {  // also false for NaN
    b.x0 = b.y0 = 0;
    b.fx = b.fy = T(0);
    b.interior = false;
    return b;
  }
  b.x0 = floor_to_int(x);
  b.y0 = floor_to_int(y);
  b.fx = x - static_cast<T>(b.x0);
  b.fy = y - static_cast<T>(b.y0);
  b.interior = b.x0 >= 0 && b.y0 >= 0 && b.x0 + 1 < width && b.y0 + 1 < height;
  return b;
}

// Channel loops use GCC/Clang vector extensions of 64 bytes (16 floats / 8 doubles): one zmm register
// on AVX-512, split into two ymm / four xmm by the compiler for AVX2 / baseline units. Loads and stores
// go through an unaligned, may_alias vector type; a scalar loop handles a channel tail.
template <typename T>
struct Vec {
  static constexpr int width = 64 / sizeof(T);
  typedef T type __attribute__((vector_size(64)));
  typedef T unaligned __attribute__((vector_size(64), may_alias, aligned(sizeof(T))));
  static inline type load(const T* p) { return *reinterpret_cast<const unaligned*>(p); }
  static inline void store(T* p, type v) { *reinterpret_cast<unaligned*>(p) = v; }
  static inline type splat(T x) { return type{} + x; }
  // Tree reduction: 64 -> 32 -> 16 bytes with vector adds, then the last lanes as scalars.
  typedef T half_type __attribute__((vector_size(32)));
  typedef T quarter_type __attribute__((vector_size(16)));
  static inline T sum(type v) {
    half_type lo, hi;
    __builtin_memcpy(&lo, &v, 32);
    __builtin_memcpy(&hi, reinterpret_cast<const char*>(&v) + 32, 32);
    const half_type h = lo + hi;
    quarter_type qlo, qhi;
    __builtin_memcpy(&qlo, &h, 16);
    __builtin_memcpy(&qhi, reinterpret_cast<const char*>(&h) + 16, 16);
    const quarter_type q = qlo + qhi;
    T s = T(0);
    for (int i = 0; i < int(16 / sizeof(T)); ++i) s += q[i];
    return s;
  }
};

// acc[c] += w0 r0[c] + w1 r1[c] + w2 r2[c] + w3 r3[c]; DC > 0 fixes the channel count at compile time.
template <typename T, int DC>
inline void axpy4(T* __restrict acc, int64_t channels, T w0, const T* __restrict r0, T w1, const T* __restrict r1,
                  T w2, const T* __restrict r2, T w3, const T* __restrict r3) {
  using V = Vec<T>;
  const int64_t d = DC > 0 ? DC : channels;
  const typename V::type v0 = V::splat(w0), v1 = V::splat(w1), v2 = V::splat(w2), v3 = V::splat(w3);
  int64_t c = 0;
  for (; c + V::width <= d; c += V::width)
    V::store(acc + c, V::load(acc + c) + v0 * V::load(r0 + c) + v1 * V::load(r1 + c) + v2 * V::load(r2 + c) +
                          v3 * V::load(r3 + c));
  for (; c < d; ++c) acc[c] += w0 * r0[c] + w1 * r1[c] + w2 * r2[c] + w3 * r3[c];
}

template <typename T, int DC>
inline void axpy1(T* __restrict acc, int64_t channels, T w, const T* __restrict r) {
  const int64_t d = DC > 0 ? DC : channels;
  for (int64_t c = 0; c < d; ++c) acc[c] += w * r[c];
}

// acc += a * (bilinear sample of one head's H x W map at b): the four corners, each weighted, skipping the
// corners outside the map (grid_sample's zero padding; an outside corner is never read). `row` is the
// element stride between neighbouring pixels. Shared by the generic forward and the exact recompute.
template <typename T, int DC>
inline void accumulate_sample(T* acc, int64_t channels, const Bilinear<T>& b, T a, const T* value_l, int64_t H,
                              int64_t W, int64_t row) {
  const T gx = T(1) - b.fx, gy = T(1) - b.fy;
  const T w00 = a * gy * gx, w01 = a * gy * b.fx, w10 = a * b.fy * gx, w11 = a * b.fy * b.fx;
  const T* r00 = value_l + (b.y0 * W + b.x0) * row;
  if (b.interior) {
    axpy4<T, DC>(acc, channels, w00, r00, w01, r00 + row, w10, r00 + W * row, w11, r00 + (W + 1) * row);
    return;
  }
  const bool x0ok = b.x0 >= 0, x1ok = b.x0 + 1 < W, y0ok = b.y0 >= 0, y1ok = b.y0 + 1 < H;
  if (y0ok && x0ok) axpy1<T, DC>(acc, channels, w00, r00);
  if (y0ok && x1ok) axpy1<T, DC>(acc, channels, w01, r00 + row);
  if (y1ok && x0ok) axpy1<T, DC>(acc, channels, w10, r00 + W * row);
  if (y1ok && x1ok) axpy1<T, DC>(acc, channels, w11, r00 + (W + 1) * row);
}

// Generic forward, one sample at a time (the previous kernel): used when a problem does not fit the
// vectorised forward below (more than kMaxQuerySamples samples per query, or an image too large for int32
// byte offsets). Work item = a block of queries of one image; within it heads are the outer loop.
template <typename T, int DC>
void forward_scalar(const Problem& pb, const T* value, const T* loc, const T* attn, T* out, int64_t begin,
                    int64_t end) {
  const int64_t D = DC > 0 ? DC : pb.channels;
  const int64_t M = pb.heads, L = pb.levels, P = pb.points, Lq = pb.queries;
  const int64_t row = M * D;  // elements between neighbouring pixels of one head
  T local[DC > 0 ? DC : 1];
  constexpr int64_t kBlock = 32;
  for (int64_t block = begin; block < end;) {
    const int64_t n = block / Lq;
    const int64_t block_end = (n + 1) * Lq < end ? ((n + 1) * Lq < block + kBlock ? (n + 1) * Lq : block + kBlock)
                                                 : (end < block + kBlock ? end : block + kBlock);
    const T* value_n = value + n * pb.num_values * row;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t idx = block; idx < block_end; ++idx) {  // idx = n * Lq + q
        const T* loc_q = loc + idx * M * L * P * 2;
        const T* attn_q = attn + idx * M * L * P;
        T* out_q = out + idx * M * D;
        T* acc = DC > 0 ? local : out_q + m * D;
        for (int64_t c = 0; c < D; ++c) acc[c] = T(0);
        for (int64_t l = 0; l < L; ++l) {
          const int64_t H = pb.shapes[2 * l], W = pb.shapes[2 * l + 1];
          const T* value_l = value_n + pb.starts[l] * row + m * D;
          for (int64_t p = 0; p < P; ++p) {
            const int64_t k = (m * L + l) * P + p;
            const Bilinear<T> b = locate<T>(loc_q[2 * k], loc_q[2 * k + 1], H, W);
            if (b.inside) accumulate_sample<T, DC>(acc, D, b, attn_q[k], value_l, H, W, row);
          }
        }
        if (DC > 0)
          for (int64_t c = 0; c < D; ++c) out_q[m * D + c] = acc[c];
      }
    }
    block = block_end;
  }
}

// One (query, head) output row with per-corner bounds checks (exact zero padding).
template <typename T>
void forward_head_exact(const Problem& pb, const T* value, const T* loc, const T* attn, T* out, int64_t idx,
                        int64_t m) {
  const int64_t D = pb.channels, M = pb.heads, L = pb.levels, P = pb.points;
  const int64_t row = M * D;
  const int64_t n = idx / pb.queries;
  const T* loc_q = loc + idx * M * L * P * 2;
  const T* attn_q = attn + idx * M * L * P;
  T* acc = out + (idx * M + m) * D;
  for (int64_t c = 0; c < D; ++c) acc[c] = T(0);
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = pb.shapes[2 * l], W = pb.shapes[2 * l + 1];
    const T* value_l = value + (n * pb.num_values + pb.starts[l]) * row + m * D;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t k = (m * L + l) * P + p;
      const Bilinear<T> b = locate<T>(loc_q[2 * k], loc_q[2 * k + 1], H, W);
      if (b.inside) accumulate_sample<T, 0>(acc, D, b, attn_q[k], value_l, H, W, row);
    }
  }
}

// ---- Vectorised forward ------------------------------------------------------------------------------
// Two passes per block of queries:
//  1. locate: all M*L*P samples of a query, one native vector register of lanes per step, branch-free:
//     pixel coordinates, floor, fractions, the four corner weights (attention weight folded in; zero for
//     corners outside the map and for samples outside it) and the four corner byte offsets into the image
//     (int32; corners outside the map are clamped onto it, so every read is in bounds).
//  2. gather: per (query, head) the channel accumulators stay in registers across all L*P samples; the
//     four corners feed independent accumulator sets (short FMA dependency chains).
// A clamped corner adds 0 * value, which is 0 unless that value is inf/NaN; an output row of a head that
// comes out NaN is therefore recomputed with the per-corner bounds-checked code (forward_head_exact).
#if defined(__AVX512F__)
constexpr int kRegBytes = 64;
constexpr int kAccRegs = 16;  // vector registers the gather loop may use for accumulators
#elif defined(__AVX__)
constexpr int kRegBytes = 32;
constexpr int kAccRegs = 8;
#else
constexpr int kRegBytes = 16;
constexpr int kAccRegs = 8;
#endif
constexpr int64_t kMaxQuerySamples = 512;  // M*L*P (rounded up to the lane count) handled by the fast path
constexpr int64_t kBlockBytes = 6144;      // located samples per block x sizeof(T): 1536 float / 768 double
constexpr int64_t kPrefetchAhead = 4;      // (query, head) items whose corner rows are prefetched ahead

template <typename T>
struct Lanes {
  static constexpr int n = kRegBytes / int(sizeof(T));  // one native register of T
  typedef T fv __attribute__((vector_size(kRegBytes)));
  typedef decltype(fv{} < fv{}) fm;  // lane masks (and shuffle indices) with T-sized integers
  typedef int32_t iv __attribute__((vector_size(n * 4)));
  template <typename V>
  static inline V load(const void* p) {
    V v;
    __builtin_memcpy(&v, p, sizeof(V));
    return v;
  }
  template <typename V>
  static inline void store(void* p, V v) {
    __builtin_memcpy(p, &v, sizeof(V));
  }
};

// (x0 y0 x1 y1 ...) in two registers -> (x0 x1 ...), (y0 y1 ...). __builtin_shufflevector (clang, GCC >= 12)
// needs the indices spelled out per lane count; older GCC gets __builtin_shuffle with index vectors.
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
template <typename V>
inline void deinterleave(V a, V b, V& x, V& y) {
  constexpr int n = sizeof(V) / sizeof(a[0]);
  static_assert(n == 2 || n == 4 || n == 8 || n == 16, "lane count");
  if constexpr (n == 2) {
    x = __builtin_shufflevector(a, b, 0, 2);
    y = __builtin_shufflevector(a, b, 1, 3);
  } else if constexpr (n == 4) {
    x = __builtin_shufflevector(a, b, 0, 2, 4, 6);
    y = __builtin_shufflevector(a, b, 1, 3, 5, 7);
  } else if constexpr (n == 8) {
    x = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
    y = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
  } else {
    x = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    y = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  }
}
#else
template <typename V>
inline void deinterleave(V a, V b, V& x, V& y) {
  typedef decltype(a < a) M;
  constexpr int n = sizeof(V) / sizeof(a[0]);
  M even, odd;
  for (int i = 0; i < n; ++i) {
    even[i] = 2 * i;
    odd[i] = 2 * i + 1;
  }
  x = __builtin_shuffle(a, b, even);
  y = __builtin_shuffle(a, b, odd);
}
#endif

// Per-sample constants of one query's M*L*P samples (the pattern repeats for every query).
template <typename T>
struct alignas(64) SampleTable {
  T wf[kMaxQuerySamples], hf[kMaxQuerySamples];  // W_l, H_l
  int32_t wi[kMaxQuerySamples], hi[kMaxQuerySamples];
  int32_t base[kMaxQuerySamples];  // (level start * row + m * D) * sizeof(T)
  int32_t down[kMaxQuerySamples];  // W_l * row * sizeof(T)
};

// Locates `count` consecutive samples using table entries [0, count); writes kq entries per corner into
// off / wt (lanes past `count` hold garbage). `readable` samples may be read from loc / attn (>= count).
template <typename T>
inline void locate_query(const T* __restrict loc, const T* __restrict attn, int64_t count, int64_t readable,
                         const SampleTable<T>& tb, int32_t row_bytes, int32_t head_bytes, int32_t* __restrict off,
                         T* __restrict wt, int64_t kq) {
  using LN = Lanes<T>;
  typedef typename LN::fv fv;
  typedef typename LN::fm fm;
  typedef typename LN::iv iv;
  constexpr int n = LN::n;
  alignas(64) T pad_loc[2 * n], pad_attn[n];
  for (int64_t k0 = 0; k0 < count; k0 += n) {
    const T* lq = loc + 2 * k0;
    const T* aq = attn + k0;
    if (k0 + n > readable) {  // partial step at the end of the tensor: never read past it
      for (int i = 0; i < 2 * n; ++i) pad_loc[i] = i < 2 * (count - k0) ? lq[i] : T(0);
      for (int i = 0; i < n; ++i) pad_attn[i] = i < count - k0 ? aq[i] : T(0);
      lq = pad_loc;
      aq = pad_attn;
    }
    const fv l0 = LN::template load<fv>(lq), l1 = LN::template load<fv>(lq + n);
    fv lx, ly;
    deinterleave(l0, l1, lx, ly);
    const fv wf = LN::template load<fv>(tb.wf + k0), hf = LN::template load<fv>(tb.hf + k0);
    const iv wi = LN::template load<iv>(tb.wi + k0), hi = LN::template load<iv>(tb.hi + k0);
    fv x = lx * wf - T(0.5);
    fv y = ly * hf - T(0.5);
    const fm inside = (x > T(-1)) & (y > T(-1)) & (x < wf) & (y < hf);  // false for NaN
    const fv zf = fv{};
    x = inside ? x : zf;
    y = inside ? y : zf;
    iv x0 = __builtin_convertvector(x, iv), y0 = __builtin_convertvector(y, iv);  // truncation
    x0 += __builtin_convertvector(__builtin_convertvector(x0, fv) > x, iv);       // floor (-1 where trunc > x)
    y0 += __builtin_convertvector(__builtin_convertvector(y0, fv) > y, iv);
    const fv fx = x - __builtin_convertvector(x0, fv), fy = y - __builtin_convertvector(y0, fv);
    const iv in = __builtin_convertvector(inside, iv);
    const iv x1 = x0 + 1, y1 = y0 + 1;
    const iv x0ok = x0 >= 0, x1ok = x1 < wi, y0ok = (y0 >= 0) & in, y1ok = (y1 < hi) & in;
    const fv a = LN::template load<fv>(aq);
    const fv gx = T(1) - fx, gy = T(1) - fy;
    LN::store(wt + 0 * kq + k0, __builtin_convertvector(y0ok & x0ok, fm) ? a * gy * gx : zf);
    LN::store(wt + 1 * kq + k0, __builtin_convertvector(y0ok & x1ok, fm) ? a * gy * fx : zf);
    LN::store(wt + 2 * kq + k0, __builtin_convertvector(y1ok & x0ok, fm) ? a * fy * gx : zf);
    LN::store(wt + 3 * kq + k0, __builtin_convertvector(y1ok & x1ok, fm) ? a * fy * fx : zf);
    // clamp onto the map (x0 >= -1, x1 <= W, likewise y), then byte offsets
    const iv zi = iv{};
    const iv cx0 = x0ok ? x0 : zi, cx1 = x1ok ? x1 : wi - 1, cy0 = y0ok ? y0 : zi, cy1 = y1ok ? y1 : hi - 1;
    const iv down = LN::template load<iv>(tb.down + k0), base = LN::template load<iv>(tb.base + k0) + head_bytes;
    const iv r0 = base + cy0 * down, r1 = base + cy1 * down, c0 = cx0 * row_bytes, c1 = cx1 * row_bytes;
    LN::store(off + 0 * kq + k0, r0 + c0);
    LN::store(off + 1 * kq + k0, r0 + c1);
    LN::store(off + 2 * kq + k0, r1 + c0);
    LN::store(off + 3 * kq + k0, r1 + c1);
  }
}

// out = sum over `samples` samples x 4 corners of w * row, for DC channels (DC * sizeof(T) a multiple of
// the register size). Returns false when the result holds a NaN (then the caller recomputes exactly).
template <typename T, int DC>
inline bool gather_fixed(const char* __restrict image, const int32_t* __restrict off, const T* __restrict wt,
                         int64_t kq, int64_t samples, T* __restrict out) {
  typedef T vt __attribute__((vector_size(kRegBytes)));
  constexpr int W = kRegBytes / int(sizeof(T));
  constexpr int NV = DC / W;
  constexpr int fit = kAccRegs / NV;
  constexpr int sets = fit >= 4 ? 4 : (fit >= 2 ? 2 : 1);
  vt acc[sets][NV];
  for (int s = 0; s < sets; ++s)
    for (int v = 0; v < NV; ++v) acc[s][v] = vt{};
  for (int64_t j = 0; j < samples; ++j) {
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const char* r = image + off[c * kq + j];
      const vt w = vt{} + wt[c * kq + j];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        vt x;
        __builtin_memcpy(&x, r + v * kRegBytes, kRegBytes);
        acc[c % sets][v] += w * x;
      }
    }
  }
  vt nan = vt{};
  for (int v = 0; v < NV; ++v) {
    for (int s = 1; s < sets; ++s) acc[0][v] += acc[s][v];
    __builtin_memcpy(out + v * W, &acc[0][v], kRegBytes);
    nan += acc[0][v];
  }
  T any = T(0);
  for (int i = 0; i < W; ++i) any += nan[i];
  return any == any;
}

// Software prefetch (into L2) of the corner rows of one (query, head): the addresses are known one block
// ahead of their use, which the hardware prefetchers cannot guess (neighbouring pixels are M*D apart).
template <typename T, int DC>
inline void prefetch_rows(const char* image, const int32_t* off, int64_t kq, int64_t samples, int64_t D) {
  int64_t bytes = (DC > 0 ? DC : D) * int64_t(sizeof(T));
  if (bytes > 512) bytes = 512;
  for (int64_t j = 0; j < samples; ++j)
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const char* r = image + off[c * kq + j];
      for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(r + b, 0, 2);
      if (bytes % 64) __builtin_prefetch(r + bytes - 1, 0, 2);
    }
}

// Same for a run-time channel count: register-sized channel chunks, then a scalar tail.
template <typename T>
inline bool gather_any(const char* __restrict image, const int32_t* __restrict off, const T* __restrict wt,
                       int64_t kq, int64_t samples, int64_t D, T* __restrict out) {
  typedef T vt __attribute__((vector_size(kRegBytes)));
  constexpr int W = kRegBytes / int(sizeof(T));
  T any = T(0);
  int64_t c0 = 0;
  for (; c0 + W <= D; c0 += W) {
    vt acc0{}, acc1{}, x;
    for (int64_t j = 0; j < samples; ++j) {
      __builtin_memcpy(&x, image + off[j] + c0 * int64_t(sizeof(T)), kRegBytes);
      acc0 += wt[j] * x;
      __builtin_memcpy(&x, image + off[kq + j] + c0 * int64_t(sizeof(T)), kRegBytes);
      acc1 += wt[kq + j] * x;
      __builtin_memcpy(&x, image + off[2 * kq + j] + c0 * int64_t(sizeof(T)), kRegBytes);
      acc0 += wt[2 * kq + j] * x;
      __builtin_memcpy(&x, image + off[3 * kq + j] + c0 * int64_t(sizeof(T)), kRegBytes);
      acc1 += wt[3 * kq + j] * x;
    }
    acc0 += acc1;
    __builtin_memcpy(out + c0, &acc0, kRegBytes);
    for (int i = 0; i < W; ++i) any += acc0[i];
  }
  for (; c0 < D; ++c0) {
    T acc = T(0);
    for (int64_t j = 0; j < samples; ++j)
      for (int c = 0; c < 4; ++c) acc += wt[c * kq + j] * reinterpret_cast<const T*>(image + off[c * kq + j])[c0];
    out[c0] = acc;
    any += acc;
  }
  return any == any;
}

template <typename T, int DC>
void forward_impl(const Problem& pb, const T* value, const T* loc, const T* attn, T* out, int64_t begin,
                  int64_t end) {
  const int64_t D = DC > 0 ? DC : pb.channels;
  const int64_t M = pb.heads, L = pb.levels, P = pb.points, Lq = pb.queries;
  constexpr int n = Lanes<T>::n;
  const int64_t LP = L * P, MLP = M * LP;
  const int64_t kq = (MLP + n - 1) / n * n;  // per-query stride of the located-sample buffers
  const int64_t row = M * D, row_bytes = row * int64_t(sizeof(T));
  // int32 byte offsets within one image: (S + 1) * row * sizeof(T) must stay below 2^31
  if (kq == 0 || kq > kMaxQuerySamples || (pb.num_values + 1) * row_bytes >= (int64_t(1) << 31))
    return forward_scalar<T, DC>(pb, value, loc, attn, out, begin, end);

  SampleTable<T> tb;
  for (int64_t k = 0; k < kq; ++k) {
    const int64_t l = k < MLP ? (k / P) % L : 0, m = k < MLP ? k / LP : 0;
    tb.hi[k] = int32_t(pb.shapes[2 * l]);
    tb.wi[k] = int32_t(pb.shapes[2 * l + 1]);
    tb.hf[k] = static_cast<T>(pb.shapes[2 * l]);
    tb.wf[k] = static_cast<T>(pb.shapes[2 * l + 1]);
    tb.base[k] = int32_t(pb.starts[l] * row_bytes + m * D * int64_t(sizeof(T)));
    tb.down[k] = int32_t(pb.shapes[2 * l + 1] * row_bytes);
  }
  constexpr int64_t kBlockSamples = kBlockBytes / int64_t(sizeof(T));  // several queries when M*L*P is small
  const int64_t block_queries = kBlockSamples / kq > 0 ? kBlockSamples / kq : 1;
  constexpr int64_t kBuf = 4 * (kBlockSamples > kMaxQuerySamples ? kBlockSamples : kMaxQuerySamples);
  alignas(64) int32_t off[kBuf];
  alignas(64) T wt[kBuf];
  for (int64_t block = begin; block < end;) {
    const int64_t img = block / Lq;
    int64_t block_end = block + block_queries;
    if (block_end > end) block_end = end;
    if (block_end > (img + 1) * Lq) block_end = (img + 1) * Lq;
    const char* image = reinterpret_cast<const char*>(value + img * pb.num_values * row);
    for (int64_t idx = block; idx < block_end; ++idx) {
      const int64_t b = idx - block;
      locate_query<T>(loc + idx * MLP * 2, attn + idx * MLP, MLP, MLP, tb, int32_t(row_bytes), 0,
                      off + b * 4 * kq, wt + b * 4 * kq, kq);
    }
    const int64_t nb = block_end - block;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t idx = block; idx < block_end; ++idx) {
        const int64_t b = idx - block;
        {  // prefetch the corner rows of the item kPrefetchAhead positions ahead (same block)
          int64_t ab = b + kPrefetchAhead, am = m;
          if (ab >= nb) ab -= nb, ++am;
          if (am < M && ab < nb) prefetch_rows<T, DC>(image, off + ab * 4 * kq + am * LP, kq, LP, D);
        }
        const int32_t* o = off + b * 4 * kq + m * LP;
        const T* w = wt + b * 4 * kq + m * LP;
        T* dst = out + (idx * M + m) * D;
        const bool finite = DC > 0 && (DC * int(sizeof(T))) % kRegBytes == 0
                                ? gather_fixed<T, (DC > 0 ? DC : 16)>(image, o, w, kq, LP, dst)
                                : gather_any<T>(image, o, w, kq, LP, D, dst);
        if (!finite) forward_head_exact<T>(pb, value, loc, attn, out, idx, m);  // skips clamped corners
      }
    }
    block = block_end;
  }
}

// One corner in the backward: returns dot(g, r) and adds w * g to the gradient row.
template <typename T, int DC>
inline T dot_scatter1(int64_t channels, const T* __restrict g, const T* __restrict r, T* __restrict gr, T w) {
  const int64_t d = DC > 0 ? DC : channels;
  T s = T(0);
  for (int64_t c = 0; c < d; ++c) {
    s += g[c] * r[c];
    gr[c] += w * g[c];
  }
  return s;
}

template <typename T, int DC>
void backward_impl(const Problem& pb, const T* value, const T* loc, const T* attn, const T* grad_out,
                   T* grad_value, T* grad_loc, T* grad_attn, int64_t begin, int64_t end) {
  const int64_t D = DC > 0 ? DC : pb.channels;
  const int64_t M = pb.heads, L = pb.levels, P = pb.points, Lq = pb.queries;
  const int64_t row = M * D;
  for (int64_t task = begin; task < end; ++task) {  // task = n * M + m
    const int64_t n = task / M, m = task % M;
    const T* value_n = value + n * pb.num_values * row + m * D;
    T* grad_value_n = grad_value + n * pb.num_values * row + m * D;
    for (int64_t q = 0; q < Lq; ++q) {
      const int64_t idx = n * Lq + q;
      const T* __restrict g = grad_out + (idx * M + m) * D;
      const T* loc_q = loc + idx * M * L * P * 2;
      const T* attn_q = attn + idx * M * L * P;
      T* grad_loc_q = grad_loc + idx * M * L * P * 2;
      T* grad_attn_q = grad_attn + idx * M * L * P;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t H = pb.shapes[2 * l], W = pb.shapes[2 * l + 1];
        const int64_t offset = pb.starts[l] * row;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t k = (m * L + l) * P + p;
          const Bilinear<T> b = locate<T>(loc_q[2 * k], loc_q[2 * k + 1], H, W);
          if (!b.inside) {
            grad_attn_q[k] = T(0);
            grad_loc_q[2 * k] = T(0);
            grad_loc_q[2 * k + 1] = T(0);
            continue;
          }
          const T a = attn_q[k];
          const T gx = T(1) - b.fx, gy = T(1) - b.fy;
          const T c00 = gy * gx, c01 = gy * b.fx, c10 = b.fy * gx, c11 = b.fy * b.fx;
          const int64_t o00 = offset + (b.y0 * W + b.x0) * row;
          const T* r00 = value_n + o00;
          T* q00 = grad_value_n + o00;
          T s00 = T(0), s01 = T(0), s10 = T(0), s11 = T(0);
          if (b.interior) {
            const T* __restrict r01 = r00 + row;
            const T* __restrict r10 = r00 + W * row;
            const T* __restrict r11 = r10 + row;
            T* __restrict q01 = q00 + row;
            T* __restrict q10 = q00 + W * row;
            T* __restrict q11 = q10 + row;
            T* __restrict q00r = q00;
            const T* __restrict r00r = r00;
            const T w00 = a * c00, w01 = a * c01, w10 = a * c10, w11 = a * c11;
            using V = Vec<T>;
            const typename V::type v00 = V::splat(w00), v01 = V::splat(w01), v10 = V::splat(w10),
                                   v11 = V::splat(w11);
            typename V::type a00{}, a01{}, a10{}, a11{};
            int64_t c = 0;
            for (; c + V::width <= D; c += V::width) {
              const typename V::type gc = V::load(g + c);
              a00 += gc * V::load(r00r + c);
              a01 += gc * V::load(r01 + c);
              a10 += gc * V::load(r10 + c);
              a11 += gc * V::load(r11 + c);
              V::store(q00r + c, V::load(q00r + c) + v00 * gc);
              V::store(q01 + c, V::load(q01 + c) + v01 * gc);
              V::store(q10 + c, V::load(q10 + c) + v10 * gc);
              V::store(q11 + c, V::load(q11 + c) + v11 * gc);
            }
            for (; c < D; ++c) {
              const T gc = g[c];
              s00 += gc * r00r[c];
              s01 += gc * r01[c];
              s10 += gc * r10[c];
              s11 += gc * r11[c];
              q00r[c] += w00 * gc;
              q01[c] += w01 * gc;
              q10[c] += w10 * gc;
              q11[c] += w11 * gc;
            }
            s00 += V::sum(a00);
            s01 += V::sum(a01);
            s10 += V::sum(a10);
            s11 += V::sum(a11);
          } else {
            const bool x0ok = b.x0 >= 0, x1ok = b.x0 + 1 < W, y0ok = b.y0 >= 0, y1ok = b.y0 + 1 < H;
            if (y0ok && x0ok) s00 = dot_scatter1<T, DC>(D, g, r00, q00, a * c00);
            if (y0ok && x1ok) s01 = dot_scatter1<T, DC>(D, g, r00 + row, q00 + row, a * c01);
            if (y1ok && x0ok) s10 = dot_scatter1<T, DC>(D, g, r00 + W * row, q00 + W * row, a * c10);
            if (y1ok && x1ok) s11 = dot_scatter1<T, DC>(D, g, r00 + (W + 1) * row, q00 + (W + 1) * row, a * c11);
          }
          grad_attn_q[k] = c00 * s00 + c01 * s01 + c10 * s10 + c11 * s11;
          grad_loc_q[2 * k] = a * static_cast<T>(W) * (gy * (s01 - s00) + b.fy * (s11 - s10));
          grad_loc_q[2 * k + 1] = a * static_cast<T>(H) * (gx * (s10 - s00) + b.fx * (s11 - s01));
        }
      }
    }
  }
}

// Channel-count dispatch: D = 32 (the common 256 / 8 heads) and 16, 64 get fully unrolled loops.
template <typename T>
void forward(const Problem& pb, const T* value, const T* loc, const T* attn, T* out, int64_t begin, int64_t end) {
  switch (pb.channels) {
    case 16: return forward_impl<T, 16>(pb, value, loc, attn, out, begin, end);
    case 32: return forward_impl<T, 32>(pb, value, loc, attn, out, begin, end);
    case 64: return forward_impl<T, 64>(pb, value, loc, attn, out, begin, end);
    default: return forward_impl<T, 0>(pb, value, loc, attn, out, begin, end);
  }
}

template <typename T>
void backward(const Problem& pb, const T* value, const T* loc, const T* attn, const T* grad_out, T* grad_value,
              T* grad_loc, T* grad_attn, int64_t begin, int64_t end) {
  switch (pb.channels) {
    case 16: return backward_impl<T, 16>(pb, value, loc, attn, grad_out, grad_value, grad_loc, grad_attn, begin, end);
    case 32: return backward_impl<T, 32>(pb, value, loc, attn, grad_out, grad_value, grad_loc, grad_attn, begin, end);
    case 64: return backward_impl<T, 64>(pb, value, loc, attn, grad_out, grad_value, grad_loc, grad_attn, begin, end);
    default: return backward_impl<T, 0>(pb, value, loc, attn, grad_out, grad_value, grad_loc, grad_attn, begin, end);
  }
}

}  // namespace
}  // namespace REFSEG_MSDA_ISA
}  // namespace refseg_msda

#define REFSEG_MSDA_STR2(x) #x
#define REFSEG_MSDA_STR(x) REFSEG_MSDA_STR2(x)
#define REFSEG_MSDA_TABLE2(isa) kernels_##isa
#define REFSEG_MSDA_TABLE(isa) REFSEG_MSDA_TABLE2(isa)

namespace refseg_msda {
extern const KernelTable REFSEG_MSDA_TABLE(REFSEG_MSDA_ISA);
const KernelTable REFSEG_MSDA_TABLE(REFSEG_MSDA_ISA) = {
    REFSEG_MSDA_STR(REFSEG_MSDA_ISA),
    &REFSEG_MSDA_ISA::forward<float>,
    &REFSEG_MSDA_ISA::forward<double>,
    &REFSEG_MSDA_ISA::backward<float>,
    &REFSEG_MSDA_ISA::backward<double>,
};
}  // namespace refseg_msda
