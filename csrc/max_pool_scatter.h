// Max pooling's forward (float32 and bfloat16) and float32 backward, written for jconv
// rather than run as oneDNN's, with XLA's semantics for NaN, infinities and ties.

#ifndef JCONV_CSRC_MAX_POOL_SCATTER_H_
#define JCONV_CSRC_MAX_POOL_SCATTER_H_

#include <cstdint>
#include <vector>

namespace jconv {

// y (n, *out, c) = the max of each window of x (n, *in, c), NaN where the window holds a
// NaN (as lax.reduce_window's max), and ws (n, *out, c; uint8, or int32 where `wide`) the
// row-major index within the padded window of the tap that XLA's select_and_scatter
// selects for max pooling's gradient: taps in row-major order, padding reading -inf, the
// selection moving to a tap t unless selected >= x[t] (so the first maximum of a window
// without NaN; a window with a NaN selects from the taps after its last NaN, or that NaN
// if it is the last tap). `bf16`: x and y are bfloat16 (compared in float32, exactly).
// Channels-last, any spatial rank; OpenMP over the windows of all images.
void SelectMaxima(const void* x, void* y, void* ws, bool bf16, bool wide, int64_t n,
                  int64_t c, const std::vector<int64_t>& in, const std::vector<int64_t>& out,
                  const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                  const std::vector<int64_t>& pad_lo);

// dx (n, *in, c): every window of dy (n, *out, c) routes its value to the tap that ws
// (n, *out, c; uint8, or int32 where `wide`) records: the row-major index of the window's
// selected tap within the padded window, as SelectMaxima writes it (and oneDNN's
// max-pooling forward, for windows without NaN). Each dx sums, in window order, the dy of
// the windows that selected it (0 if none); taps outside the input receive nothing.
// Channels-last, any spatial rank; OpenMP over the input pixels, each written once.
void ScatterToMaxima(const float* dy, const void* ws, bool wide, float* dx, int64_t n,
                     int64_t c, const std::vector<int64_t>& in,
                     const std::vector<int64_t>& out, const std::vector<int64_t>& kernel,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& pad_lo);

}  // namespace jconv

#endif  // JCONV_CSRC_MAX_POOL_SCATTER_H_
