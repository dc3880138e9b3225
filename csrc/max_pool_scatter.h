// Max pooling's backward in float32, written for jconv rather than run as oneDNN's.

#ifndef JCONV_CSRC_MAX_POOL_SCATTER_H_
#define JCONV_CSRC_MAX_POOL_SCATTER_H_

#include <cstdint>
#include <vector>

namespace jconv {

// dx (n, *in, c) = 0, then every window of dy (n, *out, c) adds its value to the tap that
// ws (n, *out, c; uint8, or int32 where `wide`) records: the row-major index of the
// window's maximum within the padded window, as oneDNN's max-pooling forward writes it.
// Channels-last, any spatial rank; taps outside the input are skipped. Each task owns one
// image's slice of up to 64 maps (OpenMP over the tasks), so no two write the same dx.
void ScatterToMaxima(const float* dy, const void* ws, bool wide, float* dx, int64_t n,
                     int64_t c, const std::vector<int64_t>& in,
                     const std::vector<int64_t>& out, const std::vector<int64_t>& kernel,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& pad_lo);

}  // namespace jconv

#endif  // JCONV_CSRC_MAX_POOL_SCATTER_H_
