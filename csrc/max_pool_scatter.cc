// Max pooling's forward (float32, bfloat16) and float32 backward, channels-last (see
// max_pool_scatter.h), compiled with OpenMP and AVX-512, AVX2 and baseline versions of their
// inner loops.

#include "max_pool_scatter.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <immintrin.h>
#include <omp.h>

// The vector helpers below are always inlined into the version of their width, so the
// calling convention GCC warns of (vectors passed without the instructions) never applies.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace jconv {
namespace {

// One pooling window's geometry: n images of c maps, spatial sizes in -> out.
struct Window {
  int64_t n, c;
  const std::vector<int64_t>& in;
  const std::vector<int64_t>& out;
  const std::vector<int64_t>& kernel;
  const std::vector<int64_t>& stride;
  const std::vector<int64_t>& pad_lo;
};

constexpr float kInf = std::numeric_limits<float>::infinity();

int64_t Product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t s : v) p *= s;
  return p;
}

// offsets[tap * nd + a]: the row-major tap's offset along axis a of the window.
std::vector<int64_t> TapOffsets(const Window& g) {
  const size_t nd = g.in.size();
  const int64_t taps = Product(g.kernel);
  std::vector<int64_t> offsets(taps * nd);
  for (int64_t tap = 0; tap < taps; ++tap) {
    for (int64_t a = static_cast<int64_t>(nd) - 1, rest = tap; a >= 0; --a) {
      offsets[tap * nd + a] = rest % g.kernel[a];
      rest /= g.kernel[a];
    }
  }
  return offsets;
}

// Each tap's maps less the window's first tap's, in elements: where a tap of a window
// without padding lies, counted from its first tap.
std::vector<int64_t> InnerSteps(const Window& g, const std::vector<int64_t>& offsets) {
  const size_t nd = g.in.size();
  std::vector<int64_t> inner(Product(g.kernel), 0);
  for (size_t tap = 0; tap < inner.size(); ++tap) {
    for (size_t a = 0; a < nd; ++a) inner[tap] = inner[tap] * g.in[a] + offsets[tap * nd + a];
    inner[tap] *= g.c;
  }
  return inner;
}

// ------------------------------------------------------------------------- forward

// The forward's vectors are L maps wide: 16 (AVX-512), 8 (AVX2) or 4 (the baseline), each
// an instruction set's register, so that GCC lowers the selects to blends (a vector wider
// than the registers it compiles for becomes one compare and branch per map: 8x slower on
// AVX2). The windows come in at least kLanes maps (the widest L), copied there if fewer.
constexpr int kLanes = 16;

template <int L>
struct Vectors {
  typedef float Floats __attribute__((vector_size(4 * L)));
  typedef int32_t Ints __attribute__((vector_size(4 * L)));
  typedef uint16_t Halves __attribute__((vector_size(2 * L)));
};

// Loads and stores L maps; bfloat16 is the high half of a float32, so both are exact (a
// stored value is one loaded, or -inf, or NaN).
template <int L>
__attribute__((always_inline)) inline typename Vectors<L>::Floats Load(const float* x) {
  typename Vectors<L>::Floats v;
  std::memcpy(&v, x, sizeof v);
  return v;
}
template <int L>
__attribute__((always_inline)) inline typename Vectors<L>::Floats Load(const uint16_t* x) {
  typename Vectors<L>::Halves h;
  std::memcpy(&h, x, sizeof h);
  return reinterpret_cast<typename Vectors<L>::Floats>(
      __builtin_convertvector(h, typename Vectors<L>::Ints) << 16);
}
template <int L>
__attribute__((always_inline)) inline void Store(typename Vectors<L>::Floats v, float* y) {
  std::memcpy(y, &v, sizeof v);
}
template <int L>
__attribute__((always_inline)) inline void Store(typename Vectors<L>::Floats v, uint16_t* y) {
  const auto h = __builtin_convertvector(reinterpret_cast<typename Vectors<L>::Ints>(v) >> 16,
                                         typename Vectors<L>::Halves);
  std::memcpy(y, &h, sizeof h);
}
template <int L>
using Lanes = std::integral_constant<int, L>;

// L int32 lanes, each below 256, stored as L bytes by the width's own instructions (GCC's
// generic conversion stores them byte by byte). Not always_inline: the functions of each
// width inline them (flatten), and their target is a subset of the width's.
__attribute__((target("avx512f"))) inline void StoreBytes(Lanes<16>, Vectors<16>::Ints v,
                                                         uint8_t* ws) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(ws),
                   _mm512_cvtepi32_epi8(reinterpret_cast<__m512i>(v)));
}
__attribute__((target("avx2"))) inline void StoreBytes(Lanes<8>, Vectors<8>::Ints v,
                                                      uint8_t* ws) {
  const __m256i lanes = reinterpret_cast<__m256i>(v);
  const __m128i words =
      _mm_packus_epi32(_mm256_castsi256_si128(lanes), _mm256_extracti128_si256(lanes, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(ws), _mm_packus_epi16(words, words));
}
inline void StoreBytes(Lanes<4>, Vectors<4>::Ints v, uint8_t* ws) {
  const __m128i words = _mm_packs_epi32(reinterpret_cast<__m128i>(v), _mm_setzero_si128());
  const int32_t four = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
  std::memcpy(ws, &four, sizeof four);
}
template <int L>
inline void StoreIndices(typename Vectors<L>::Ints v, uint8_t* ws) {
  StoreBytes(Lanes<L>{}, v, ws);
}
template <int L>
__attribute__((always_inline)) inline void StoreIndices(typename Vectors<L>::Ints v, int32_t* ws) {
  std::memcpy(ws, &v, sizeof v);
}

// Selection state of one vector of maps: the selected value, its tap, whether a NaN came.
template <int L>
struct Selection {
  using Floats = typename Vectors<L>::Floats;
  using Ints = typename Vectors<L>::Ints;
  Floats sel = -kInf + Floats{};
  Ints at{}, nan{};

  // The selection moves to the tap unless selected >= its value (select_and_scatter's GE).
  __attribute__((always_inline)) inline void Take(Floats v, int32_t tap) {
    const Ints move = ~(sel >= v);
    sel = move ? v : sel;
    at = move ? tap + Ints{} : at;
    nan |= v != v;
  }
  template <typename T, typename Index>
  __attribute__((always_inline)) inline void Put(T* y, Index* ws) const {
    Store<L>(nan ? std::numeric_limits<float>::quiet_NaN() + Floats{} : sel, y);
    StoreIndices<L>(at, ws);
  }
};

constexpr int64_t kPad = -1;  // a step that marks a tap in the padding

// One window over `width` >= L maps: tap t reads the maps at x + steps[t], or -inf where
// steps[t] is kPad (the padding); y is the selected value, or NaN if a tap held one.
// Where L does not divide width, the last vector of maps overlaps the one before.
template <int L, typename T, typename Index>
__attribute__((always_inline)) inline void SelectWindow(const T* x, const int64_t* steps,
                                                        int64_t taps, int64_t width, T* y,
                                                        Index* ws) {
  const auto inf = -kInf + typename Vectors<L>::Floats{};
  for (int64_t i = 0; i < width; i += L) {
    i = std::min<int64_t>(i, width - L);
    Selection<L> a;
    for (int64_t tap = 0; tap < taps; ++tap)
      a.Take(steps[tap] == kPad ? inf : Load<L>(x + steps[tap] + i), static_cast<int32_t>(tap));
    a.Put(y + i, ws + i);
  }
}

// The widest vectors to use: this CPU's, capped by ONEDNN_MAX_CPU_ISA as oneDNN caps its
// own kernels (SSE41 or AVX: 4 maps; AVX2 and its extensions: 8), so that one machine can
// run, and test, every version.
int WidestLanes() {
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  const std::string isa = cap ? cap : "";
  const bool sse = isa == "SSE41" || isa == "AVX";
  const bool avx2 = sse || isa.rfind("AVX2", 0) == 0;
  if (__builtin_cpu_supports("avx512f") && !avx2) return 16;
  if (__builtin_cpu_supports("avx2") && !sse) return 8;
  return 4;
}

// SelectWindowOf: SelectWindow at the widest vectors allowed (WidestLanes, chosen once).
#define JCONV_SELECT_WINDOW(T, Index)                                                       \
  __attribute__((target("avx512f"), flatten)) void SelectWindowOf512(                      \
      const T* x, const int64_t* steps, int64_t taps, int64_t width, T* y, Index* ws) {      \
    SelectWindow<16>(x, steps, taps, width, y, ws);                                         \
  }                                                                                         \
  __attribute__((target("avx2"), flatten)) void SelectWindowOf256(                         \
      const T* x, const int64_t* steps, int64_t taps, int64_t width, T* y, Index* ws) {      \
    SelectWindow<8>(x, steps, taps, width, y, ws);                                          \
  }                                                                                         \
  __attribute__((flatten)) void SelectWindowOf128(                                          \
      const T* x, const int64_t* steps, int64_t taps, int64_t width, T* y, Index* ws) {      \
    SelectWindow<4>(x, steps, taps, width, y, ws);                                          \
  }                                                                                         \
  void SelectWindowOf(const T* x, const int64_t* steps, int64_t taps, int64_t width, T* y,   \
                      Index* ws) {                                                          \
    using Fn = void (*)(const T*, const int64_t*, int64_t, int64_t, T*, Index*);            \
    static const Fn chosen = WidestLanes() == 16 ? Fn{SelectWindowOf512}                    \
                             : WidestLanes() == 8  ? Fn{SelectWindowOf256}                    \
                                                   : Fn{SelectWindowOf128};                   \
    chosen(x, steps, taps, width, y, ws);                                                   \
  }
JCONV_SELECT_WINDOW(float, uint8_t)
JCONV_SELECT_WINDOW(float, int32_t)
JCONV_SELECT_WINDOW(uint16_t, uint8_t)
JCONV_SELECT_WINDOW(uint16_t, int32_t)
#undef JCONV_SELECT_WINDOW

// Every window by itself, over all maps (OpenMP over the windows of all images, each
// thread a run of them in row-major order).
template <typename T, typename Index>
void Select(const T* x, T* y, Index* ws, const Window& g) {
  const int64_t nd = static_cast<int64_t>(g.in.size());
  const int64_t in_pixels = Product(g.in), out_pixels = Product(g.out);
  const int64_t taps = Product(g.kernel), windows = g.n * out_pixels, c = g.c;
  const std::vector<int64_t> offsets = TapOffsets(g), inner = InnerSteps(g, offsets);
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t begin = windows * me / threads, end = windows * (me + 1) / threads;
    std::vector<int64_t> o(nd), steps(taps);
    std::vector<T> few(c < kLanes ? taps * kLanes : 0);  // fewer maps than a vector
    T y_few[kLanes];
    Index ws_few[kLanes];
    for (int64_t a = nd - 1, rest = begin % out_pixels; a >= 0; --a) {
      o[a] = rest % g.out[a];
      rest /= g.out[a];
    }
    for (int64_t w = begin; w < end; ++w) {
      const T* image = x + w / out_pixels * in_pixels * c;
      bool interior = true;  // no tap in the padding
      int64_t first = 0;     // the window's first tap, as an input pixel (if interior)
      for (int64_t a = 0; a < nd; ++a) {
        const int64_t corner = o[a] * g.stride[a] - g.pad_lo[a];
        interior = interior && corner >= 0 && corner + g.kernel[a] <= g.in[a];
        first = first * g.in[a] + std::max<int64_t>(corner, 0);
      }
      const T* base = image + first * c;  // where the steps count from
      const int64_t* tap_steps = inner.data();
      if (!interior || c < kLanes) {  // the padding's taps marked, or copies of few maps
        base = c < kLanes ? few.data() : image;
        for (int64_t tap = 0; tap < taps; ++tap) {
          bool inside = true;
          int64_t at = 0;
          for (int64_t a = 0; a < nd; ++a) {
            const int64_t i = o[a] * g.stride[a] - g.pad_lo[a] + offsets[tap * nd + a];
            inside = inside && i >= 0 && i < g.in[a];
            at = at * g.in[a] + i;
          }
          steps[tap] = !inside ? kPad : c < kLanes ? tap * kLanes : at * c;
          if (c < kLanes && inside) std::copy_n(image + at * c, c, few.data() + tap * kLanes);
        }
        tap_steps = steps.data();
      }
      if (c >= kLanes) {
        SelectWindowOf(base, tap_steps, taps, c, y + w * c, ws + w * c);
      } else {
        SelectWindowOf(base, tap_steps, taps, kLanes, y_few, ws_few);
        std::copy_n(y_few, c, y + w * c);
        std::copy_n(ws_few, c, ws + w * c);
      }
      for (int64_t a = nd - 1; a >= 0 && ++o[a] == g.out[a]; --a) o[a] = 0;
    }
  }
}

// ------------------------------------------------------------------------- backward

// Max pooling's backward in float32, channels-last, on any spatial rank, in gather form:
// each input pixel p sums, in row-major order of the windows q that cover it, dy[q] where
// ws[q] records p's tap in q, 0 elsewhere. Every dx is written once, whole vectors of maps
// at a time; the sums are those of adding each window's dy to its tap in window order (a
// +0 added changes no sum that starts at +0), so the result does not depend on the width.
// (Scattering each map's dy to its tap one map at a time, after zeroing dx, took 10 cycles
// a map on 2 AMD EPYC cores: GoogLeNet's 3x3/1 pool of 256 maps at 28x28, batch 4,
// backward 2.0 against PyTorch's 1.6 ms.)

// L maps' recorded taps as int32 lanes: uint8 widened by one instruction of the width's
// own set (GCC's generic conversion of 4 or 8 bytes goes byte by byte), int32 as stored.
__attribute__((target("avx512f"), always_inline)) inline Vectors<16>::Ints Taps(
    Lanes<16>, const uint8_t* ws) {
  return reinterpret_cast<Vectors<16>::Ints>(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ws))));
}
__attribute__((target("avx2"), always_inline)) inline Vectors<8>::Ints Taps(Lanes<8>,
                                                                           const uint8_t* ws) {
  return reinterpret_cast<Vectors<8>::Ints>(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ws))));
}
__attribute__((always_inline)) inline Vectors<4>::Ints Taps(Lanes<4>, const uint8_t* ws) {
  int32_t four;
  std::memcpy(&four, ws, sizeof four);
  const __m128i zero = _mm_setzero_si128();
  return reinterpret_cast<Vectors<4>::Ints>(
      _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(four), zero), zero));
}
template <int L>
__attribute__((always_inline)) inline typename Vectors<L>::Ints Taps(Lanes<L>,
                                                                     const int32_t* ws) {
  typename Vectors<L>::Ints v;
  std::memcpy(&v, ws, sizeof v);
  return v;
}

// GatherPixelOf<SUFFIX>: one input pixel over `width` >= L maps: dx = the sum over the m
// windows j at dy + at[j] of their dy where their ws equals tap[j]. Where L does not divide
// width, the last vector of maps overlaps the one before (and writes the same sums again).
#define JCONV_GATHER_PIXEL(SUFFIX, TARGET, L)                                              \
  template <typename Index>                                                                \
  TARGET void GatherPixelOf##SUFFIX(const float* dy, const Index* ws, const int64_t* at,   \
                                    const int32_t* tap, int64_t m, int64_t width,          \
                                    float* dx) {                                           \
    using Floats = Vectors<L>::Floats;                                                     \
    for (int64_t i = 0; i < width; i += L) {                                               \
      i = std::min<int64_t>(i, width - L);                                                 \
      Floats sum{};                                                                        \
      for (int64_t j = 0; j < m; ++j) {                                                    \
        const auto picked = Taps(Lanes<L>{}, ws + at[j] + i) == tap[j];                    \
        sum += picked ? Load<L>(dy + at[j] + i) : Floats{};                                \
      }                                                                                    \
      Store<L>(sum, dx + i);                                                               \
    }                                                                                      \
  }
JCONV_GATHER_PIXEL(512, __attribute__((target("avx512f"))), 16)
JCONV_GATHER_PIXEL(256, __attribute__((target("avx2"))), 8)
JCONV_GATHER_PIXEL(128, , 4)
#undef JCONV_GATHER_PIXEL

// GatherPixelOf: at the widest vectors allowed (WidestLanes, chosen once), or one map at a
// time where there are fewer maps than a vector.
template <typename Index>
void GatherPixelOf(const float* dy, const Index* ws, const int64_t* at, const int32_t* tap,
                   int64_t m, int64_t width, float* dx) {
  using Fn = void (*)(const float*, const Index*, const int64_t*, const int32_t*, int64_t,
                      int64_t, float*);
  static const int lanes = WidestLanes();
  static const Fn chosen = lanes == 16  ? Fn{GatherPixelOf512<Index>}
                           : lanes == 8 ? Fn{GatherPixelOf256<Index>}
                                        : Fn{GatherPixelOf128<Index>};
  if (width >= lanes) {
    chosen(dy, ws, at, tap, m, width, dx);
    return;
  }
  for (int64_t i = 0; i < width; ++i) {
    float sum = 0.0f;
    for (int64_t j = 0; j < m; ++j) sum += ws[at[j] + i] == tap[j] ? dy[at[j] + i] : 0.0f;
    dx[i] = sum;
  }
}

// Every input pixel by itself, over all maps (OpenMP over the pixels of all images, each
// thread a run of them in row-major order). Along axis a, pixel i lies in the windows q with
// q * stride - pad_lo <= i < q * stride - pad_lo + kernel, at their tap i - q * stride + pad_lo.
template <typename Index>
void Gather(const float* dy, const Index* ws, float* dx, const Window& g) {
  const int64_t nd = static_cast<int64_t>(g.in.size());
  const int64_t in_pixels = Product(g.in), out_pixels = Product(g.out), c = g.c;
  const int64_t pixels = g.n * in_pixels, most = Product(g.kernel);  // windows a pixel is in
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t begin = pixels * me / threads, end = pixels * (me + 1) / threads;
    std::vector<int64_t> p(nd), lo(nd), count(nd), q(nd), at(most);
    std::vector<int32_t> tap(most);
    for (int64_t a = nd - 1, rest = begin % in_pixels; a >= 0; --a) {
      p[a] = rest % g.in[a];
      rest /= g.in[a];
    }
    for (int64_t pixel = begin; pixel < end; ++pixel) {
      const int64_t image = pixel / in_pixels * out_pixels;
      bool any = true;
      for (int64_t a = 0; a < nd; ++a) {  // the windows along axis a: lo[a], ..., + count[a]
        const int64_t shifted = p[a] + g.pad_lo[a];
        const int64_t first = std::max<int64_t>(
            0, shifted >= g.kernel[a] ? (shifted - g.kernel[a]) / g.stride[a] + 1 : 0);
        const int64_t last = std::min<int64_t>(g.out[a] - 1, shifted / g.stride[a]);
        lo[a] = first;
        count[a] = last - first + 1;
        any = any && count[a] > 0;
      }
      int64_t m = 0;
      if (any) {  // every window of the product, in row-major order
        std::fill(q.begin(), q.end(), 0);
        do {
          int64_t window = 0, t = 0;
          for (int64_t a = 0; a < nd; ++a) {
            const int64_t qa = lo[a] + q[a];
            window = window * g.out[a] + qa;
            t = t * g.kernel[a] + p[a] + g.pad_lo[a] - qa * g.stride[a];
          }
          at[m] = (image + window) * c;
          tap[m++] = static_cast<int32_t>(t);
          int64_t a = nd - 1;
          for (; a >= 0 && ++q[a] == count[a]; --a) q[a] = 0;
          if (a < 0) break;
        } while (true);
      }
      GatherPixelOf(dy, ws, at.data(), tap.data(), m, c, dx + pixel * c);
      for (int64_t a = nd - 1; a >= 0 && ++p[a] == g.in[a]; --a) p[a] = 0;
    }
  }
}

}  // namespace

void SelectMaxima(const void* x, void* y, void* ws, bool bf16, bool wide, int64_t n,
                  int64_t c, const std::vector<int64_t>& in, const std::vector<int64_t>& out,
                  const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                  const std::vector<int64_t>& pad_lo) {
  const Window g{n, c, in, out, kernel, stride, pad_lo};
  if (bf16 && wide) {
    Select(static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y),
           static_cast<int32_t*>(ws), g);
  } else if (bf16) {
    Select(static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y),
           static_cast<uint8_t*>(ws), g);
  } else if (wide) {
    Select(static_cast<const float*>(x), static_cast<float*>(y), static_cast<int32_t*>(ws),
           g);
  } else {
    Select(static_cast<const float*>(x), static_cast<float*>(y), static_cast<uint8_t*>(ws),
           g);
  }
}

void ScatterToMaxima(const float* dy, const void* ws, bool wide, float* dx, int64_t n,
                     int64_t c, const std::vector<int64_t>& in,
                     const std::vector<int64_t>& out, const std::vector<int64_t>& kernel,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& pad_lo) {
  const Window g{n, c, in, out, kernel, stride, pad_lo};
  if (wide) {
    Gather(dy, static_cast<const int32_t*>(ws), dx, g);
  } else {
    Gather(dy, static_cast<const uint8_t*>(ws), dx, g);
  }
}

}  // namespace jconv
