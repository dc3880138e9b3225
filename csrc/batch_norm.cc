// Training-mode batch normalisation's two reductions, as XLA FFI handlers.
//
// x, dy: (N, *S, C) float32, row-major, read as M = N·Π S rows of C maps. Per map c:
//
//   BnSums:      s1[c] = Σ_r x[r, c]              s2[c] = Σ_r x[r, c]²
//   BnGradSums:  s1[c] = Σ_r g[r, c]              s2[c] = Σ_r g[r, c]·x[r, c]
//                with g = dy·[x·a[c] + b[c] > 0] (relu = 1) or g = dy (relu = 0)
//
// (jconv/onednn/batch_norm.py turns them into the mean, the variance and the gradient.)
// XLA:CPU runs Σx and Σx² as two passes over x, and the backward as a pass writing g, then
// a pass for each sum reading it back; here each is one pass, reading each array once, with
// g never stored.
//
// Each thread takes a contiguous run of rows; sums run in float over blocks of kBlock rows,
// vectorised across the maps, and the blocks add up in double. The threads' totals are then
// added in thread order, so a thread count gives the same bits every call. Calls hold the
// extension's one-call-at-a-time lock (onednn_common.h), as the oneDNN passes do: their
// OpenMP teams would otherwise share the cores with those passes'.

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include <omp.h>

#include "onednn_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kBlock = 64;  // rows summed in float before the double totals

enum class Mode { kMoments, kGrad, kGradRelu };

template <Mode kMode>
void Sums(const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ a,
          const float* __restrict__ b, int64_t m, int64_t c, float* s1, float* s2) {
  // Small arrays (a few maps of a few pixels) are not worth waking the threads for.
  const int wanted = m * c >= (int64_t{1} << 15) ? omp_get_max_threads() : 1;
  const int most = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, m)));
  std::vector<double> totals(static_cast<size_t>(most) * 2 * c, 0.0);
  int used = 1;
#pragma omp parallel num_threads(most) if (most > 1)
  {
    const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
#pragma omp single
    used = static_cast<int>(team);
    const int64_t lo = m * me / team, hi = m * (me + 1) / team;
    std::vector<float> acc(2 * c);
    float* __restrict__ a1 = acc.data();
    float* __restrict__ a2 = acc.data() + c;
    double* t1 = totals.data() + me * 2 * c;
    double* t2 = t1 + c;
    for (int64_t r0 = lo; r0 < hi; r0 += kBlock) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      const int64_t r1 = std::min(hi, r0 + kBlock);
      for (int64_t r = r0; r < r1; ++r) {
        const float* __restrict__ xr = x + r * c;
        if constexpr (kMode == Mode::kMoments) {
          for (int64_t j = 0; j < c; ++j) {
            a1[j] += xr[j];
            a2[j] += xr[j] * xr[j];
          }
        } else {
          const float* __restrict__ dr = dy + r * c;
          for (int64_t j = 0; j < c; ++j) {
            float g = dr[j];
            if constexpr (kMode == Mode::kGradRelu) g = xr[j] * a[j] + b[j] > 0.0f ? g : 0.0f;
            a1[j] += g;
            a2[j] += g * xr[j];
          }
        }
      }
      for (int64_t j = 0; j < c; ++j) {
        t1[j] += a1[j];
        t2[j] += a2[j];
      }
    }
  }
  for (int64_t j = 0; j < c; ++j) {
    double u1 = 0.0, u2 = 0.0;
    for (int t = 0; t < used; ++t) {
      u1 += totals[t * 2 * c + j];
      u2 += totals[t * 2 * c + c + j];
    }
    s1[j] = static_cast<float>(u1);
    s2[j] = static_cast<float>(u2);
  }
}

// The maps C (the last axis) and rows M of x; false where x has no axes.
bool RowsAndMaps(const ffi::Buffer<ffi::F32>& x, int64_t* m, int64_t* c) {
  const auto dims = x.dimensions();
  if (dims.size() == 0) return false;
  *c = dims.back();
  *m = *c ? static_cast<int64_t>(x.element_count()) / *c : 0;
  return true;
}

ffi::Error BnSums(ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> s1,
                  ffi::ResultBuffer<ffi::F32> s2) {
  int64_t m, c;
  if (!RowsAndMaps(x, &m, &c) || static_cast<int64_t>(s1->element_count()) != c ||
      static_cast<int64_t>(s2->element_count()) != c) {
    return ffi::Error::InvalidArgument("batch norm sums: x must be (..., C), the sums (C,)");
  }
  std::lock_guard<std::mutex> one_at_a_time(jconv::OneCallAtATime());
  Sums<Mode::kMoments>(nullptr, x.typed_data(), nullptr, nullptr, m, c, s1->typed_data(),
                       s2->typed_data());
  return ffi::Error::Success();
}

ffi::Error BnGradSums(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> a,
                      ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> s1,
                      ffi::ResultBuffer<ffi::F32> s2, int64_t relu) {
  int64_t m, c;
  if (!RowsAndMaps(x, &m, &c) || dy.element_count() != x.element_count() ||
      static_cast<int64_t>(a.element_count()) != c || static_cast<int64_t>(b.element_count()) != c ||
      static_cast<int64_t>(s1->element_count()) != c ||
      static_cast<int64_t>(s2->element_count()) != c) {
    return ffi::Error::InvalidArgument(
        "batch norm gradient sums: dy and x must be (..., C) of one size, a, b and the sums (C,)");
  }
  std::lock_guard<std::mutex> one_at_a_time(jconv::OneCallAtATime());
  if (relu) {
    Sums<Mode::kGradRelu>(dy.typed_data(), x.typed_data(), a.typed_data(), b.typed_data(), m, c,
                          s1->typed_data(), s2->typed_data());
  } else {
    Sums<Mode::kGrad>(dy.typed_data(), x.typed_data(), nullptr, nullptr, m, c, s1->typed_data(),
                      s2->typed_data());
  }
  return ffi::Error::Success();
}

}  // namespace

#pragma GCC visibility push(default)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvBnSums, BnSums,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvBnGradSums, BnGradSums,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("relu"));

#pragma GCC visibility pop
