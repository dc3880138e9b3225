// oneDNN convolutions as XLA FFI handlers: forward, backward-data, backward-weights.
//
// Layouts are JAX's channels-last ones, with 1, 2 or 3 spatial axes:
//   x, dx  (N, *S, C)         activations ("NHWC")
//   w, dw  (*K, C/G, O)        kernel ("HWIO"), O filters in G groups, group-major
//   y, dy  (N, *S', O)         output
// Attributes: stride, dilation (1 = dense), pad_lo, pad_hi (one per spatial axis) and
// groups. Activations are handed to oneDNN in place, described by their strides (except
// for backward-weights of some windows over several maps: WeightGradientPath); the
// kernel is given as format_tag::any and reordered to the layout the chosen
// implementation wants (plain HWIO would send depthwise convs to a generic kernel).
//
// Primitives are cached by (pass, dtype, shapes, window) in a bounded LRU cache behind a
// mutex; entries are immutable and shared, and every call brings its own scratchpad
// (scratchpad_mode::user) from a buffer of its thread, so concurrent calls from several
// threads are safe.
//
// Built by jconv/backends/build.py: g++ -O3 -std=c++17 -shared -fPIC, against the FFI
// headers of jax.ffi.include_dir() and the oneDNN 3.2 headers and library.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "lru_cache.h"
#include "onednn_common.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

using jconv::Activation;
using jconv::DataType;
using jconv::Engine;
using jconv::ThreadBuffer;

enum Pass : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// One convolution, as JAX sees it.
struct Geometry {
  int64_t n = 0, c = 0, k = 0, groups = 1;
  std::vector<int64_t> in, ker, out, stride, dilation, pad_lo, pad_hi;
};

// A (*K, C/G, O) row-major kernel as oneDNN's (O, I, *K), or (G, O/G, I, *K) with groups.
memory::desc Kernel(const Geometry& g, memory::data_type dt) {
  const int64_t in_per_group = g.c / g.groups;
  std::vector<int64_t> tap_strides(g.ker.size());
  int64_t inner = in_per_group * g.k;
  for (int i = static_cast<int>(g.ker.size()) - 1; i >= 0; --i) {
    tap_strides[i] = inner;
    inner *= g.ker[i];
  }
  memory::dims dims, strides;
  if (g.groups > 1) {
    dims = {g.groups, g.k / g.groups, in_per_group};
    strides = {g.k / g.groups, 1, g.k};
  } else {
    dims = {g.k, in_per_group};
    strides = {1, g.k};
  }
  for (size_t i = 0; i < g.ker.size(); ++i) {
    dims.push_back(g.ker[i]);
    strides.push_back(tap_strides[i]);
  }
  return memory::desc(dims, dt, strides);
}

// Everything one call needs, built once per key and never changed after.
struct Entry {
  memory::desc x, y, user_w, prim_w;
  dnnl::primitive conv;
  bool reorder_w = false;
  dnnl::primitive reorder;  // user_w -> prim_w, or prim_w -> user_w for the weight gradient
  // Backward-weights only: x and dy reordered into the layouts its kernel wants
  // (WeightGradientPath).
  memory::desc prim_x, prim_y;
  bool reorder_act = false;
  dnnl::primitive reorder_x, reorder_y;
  size_t scratch_bytes = 0;
};

// How backward-weights reads x and dy. oneDNN 3.2 has no brgemm kernel for it on AVX2,
// and its direct kernel (jit:avx2) is often the slowest choice there. Measured on AVX2,
// medians of 15 interleaved calls, reorders included (batch 4-8, 7x7 to 112x112):
// - kGemm, im2col and one GEMM on channels-last arrays, for dense windows over 64 or more
//   maps into 128 or more filters: 10-40% faster (GoogLeNet's 3x3 convs);
// - kBlocked, the direct kernel on blocked layouts (format_tag::any, reordered per call),
//   for other windows over several maps: up to 37% faster (32 maps at 112x112, grouped);
// - kChannelsLast otherwise: 1x1 convs have their own kernel, depthwise ones gain nothing.
enum class WeightGradient { kChannelsLast, kBlocked, kGemm };

WeightGradient WeightGradientPath(const Geometry& g) {
  int64_t taps = 1;
  for (int64_t k : g.ker) taps *= k;
  const int64_t maps = g.c / g.groups;
  if (taps == 1 || maps == 1) return WeightGradient::kChannelsLast;
  if (g.groups == 1 && maps >= 64 && g.k >= 128) return WeightGradient::kGemm;
  return WeightGradient::kBlocked;
}

// Moves bwd on to oneDNN's GEMM implementation where the first one offered is jit:avx2
// (elsewhere, as on CPUs with brgemm kernels, oneDNN's first choice stays); false if it
// went past the first and found none.
bool PreferGemm(dnnl::convolution_backward_weights::primitive_desc* bwd) {
  if (std::string(bwd->impl_info_str()) != "jit:avx2") return true;
  while (bwd->next_impl()) {
    if (std::string(bwd->impl_info_str()).find("gemm") != std::string::npos) return true;
  }
  return false;
}

std::shared_ptr<const Entry> Build(Pass pass, const Geometry& g, memory::data_type dt) {
  auto& eng = Engine();
  auto entry = std::make_shared<Entry>();
  entry->x = Activation(g.n, g.c, g.in, dt);
  entry->y = Activation(g.n, g.k, g.out, dt);
  entry->user_w = Kernel(g, dt);
  memory::desc any_w(entry->user_w.get_dims(), dt, memory::format_tag::any);
  memory::dims strides(g.stride), dilates, pad_lo(g.pad_lo), pad_hi(g.pad_hi);
  for (int64_t d : g.dilation) dilates.push_back(d - 1);  // oneDNN counts the gaps
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto algo = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, algo, entry->x, any_w, entry->y, strides,
      dilates, pad_lo, pad_hi, attr);
  size_t scratch = 0;
  if (pass == kForward) {
    entry->prim_w = fwd.weights_desc();
    entry->conv = dnnl::convolution_forward(fwd);
    scratch = fwd.scratchpad_desc().get_size();
  } else if (pass == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc bwd(
        eng, algo, entry->x, any_w, entry->y, strides, dilates, pad_lo, pad_hi, fwd, attr);
    entry->prim_w = bwd.weights_desc();
    entry->conv = dnnl::convolution_backward_data(bwd);
    scratch = bwd.scratchpad_desc().get_size();
  } else {
    const WeightGradient path = WeightGradientPath(g);
    const bool blocked = path == WeightGradient::kBlocked;
    memory::desc any_x(entry->x.get_dims(), dt, memory::format_tag::any);
    memory::desc any_y(entry->y.get_dims(), dt, memory::format_tag::any);
    auto weight_gradient = [&] {
      return dnnl::convolution_backward_weights::primitive_desc(
          eng, algo, blocked ? any_x : entry->x, any_w, blocked ? any_y : entry->y, strides,
          dilates, pad_lo, pad_hi, fwd, attr);
    };
    auto bwd = weight_gradient();
    if (path == WeightGradient::kGemm && !PreferGemm(&bwd)) bwd = weight_gradient();
    entry->prim_w = bwd.diff_weights_desc();
    entry->conv = dnnl::convolution_backward_weights(bwd);
    scratch = bwd.scratchpad_desc().get_size();
    entry->prim_x = bwd.src_desc();
    entry->prim_y = bwd.diff_dst_desc();
    entry->reorder_act = entry->prim_x != entry->x || entry->prim_y != entry->y;
    if (entry->reorder_act) {
      dnnl::reorder::primitive_desc rx(eng, entry->x, eng, entry->prim_x, attr);
      dnnl::reorder::primitive_desc ry(eng, entry->y, eng, entry->prim_y, attr);
      entry->reorder_x = dnnl::reorder(rx);
      entry->reorder_y = dnnl::reorder(ry);
      scratch = std::max({scratch, rx.scratchpad_desc().get_size(),
                          ry.scratchpad_desc().get_size()});
    }
  }
  entry->reorder_w = entry->prim_w != entry->user_w;
  if (entry->reorder_w) {
    const bool to_user = pass == kBackwardWeights;
    dnnl::reorder::primitive_desc rpd(eng, to_user ? entry->prim_w : entry->user_w, eng,
                                      to_user ? entry->user_w : entry->prim_w, attr);
    entry->reorder = dnnl::reorder(rpd);
    scratch = std::max(scratch, rpd.scratchpad_desc().get_size());
  }
  entry->scratch_bytes = scratch;
  return entry;
}

using Cache = jconv::LruCache<std::vector<int64_t>, const Entry>;

Cache& GlobalCache() {
  static Cache* cache = new Cache(256);  // never destroyed: handlers may run at exit
  return *cache;
}

std::vector<int64_t> Vec(ffi::Span<const int64_t> s) {
  return std::vector<int64_t>(s.begin(), s.end());
}

// Reads the geometry off the three arrays' shapes and checks that they agree.
ffi::Error MakeGeometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                        ffi::Span<const int64_t> y, ffi::Span<const int64_t> stride,
                        ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> pad_lo,
                        ffi::Span<const int64_t> pad_hi, int64_t groups, Geometry* g) {
  const size_t nd = x.size() - 2;
  if (x.size() < 3 || x.size() > 5 || w.size() != nd + 2 || y.size() != nd + 2 ||
      stride.size() != nd || dilation.size() != nd || pad_lo.size() != nd ||
      pad_hi.size() != nd) {
    return ffi::Error::InvalidArgument("onednn conv: ranks of x, w, y and window disagree");
  }
  g->n = x[0];
  g->c = x[nd + 1];
  g->k = w[nd + 1];
  g->groups = groups;
  for (size_t i = 0; i < nd; ++i) {
    g->in.push_back(x[i + 1]);
    g->ker.push_back(w[i]);
    g->out.push_back(y[i + 1]);
  }
  g->stride = Vec(stride);
  g->dilation = Vec(dilation);
  g->pad_lo = Vec(pad_lo);
  g->pad_hi = Vec(pad_hi);
  if (groups < 1 || g->c % groups != 0 || g->k % groups != 0 || w[nd] * groups != g->c ||
      y[0] != g->n || y[nd + 1] != g->k) {
    return ffi::Error::InvalidArgument(
        "onednn conv: x (N, *S, C), w (*K, C/groups, O) and y (N, *S', O) disagree");
  }
  for (size_t i = 0; i < nd; ++i) {
    const int64_t extent = (g->ker[i] - 1) * g->dilation[i] + 1;
    const int64_t span = g->in[i] + g->pad_lo[i] + g->pad_hi[i] - extent;
    if (g->stride[i] < 1 || g->dilation[i] < 1 || span < 0 ||
        span / g->stride[i] + 1 != g->out[i]) {
      return ffi::Error::InvalidArgument(
          "onednn conv: output size disagrees with the input, kernel and window");
    }
  }
  return ffi::Error::Success();
}

std::vector<int64_t> MakeKey(Pass pass, memory::data_type dt, const Geometry& g) {
  std::vector<int64_t> key{pass, static_cast<int64_t>(dt), g.n, g.c, g.k, g.groups,
                 static_cast<int64_t>(g.in.size())};
  for (const auto* v : {&g.in, &g.ker, &g.out, &g.stride, &g.dilation, &g.pad_lo, &g.pad_hi})
    key.insert(key.end(), v->begin(), v->end());
  return key;
}

// Runs one pass. x, w, y are the activation, kernel and output buffers; which of them is
// written depends on the pass (y forward, x backward-data, w backward-weights).
ffi::Error Run(Pass pass, ffi::DataType type, void* x, void* w, void* y, size_t out_bytes,
               const Geometry& g) {
  memory::data_type dt;
  if (!DataType(type, &dt)) {
    return ffi::Error::InvalidArgument("onednn conv: dtype must be float32 or bfloat16");
  }
  int64_t elements = g.n * g.c * g.k;
  for (size_t i = 0; i < g.in.size(); ++i) elements *= g.in[i] * g.ker[i] * g.out[i];
  if (elements == 0) {  // an empty batch or map: the sum over nothing is zero
    std::memset(pass == kForward ? y : pass == kBackwardData ? x : w, 0, out_bytes);
    return ffi::Error::Success();
  }
  try {
    auto entry = GlobalCache().Get(MakeKey(pass, dt, g), [&] { return Build(pass, g, dt); });
    std::lock_guard<std::mutex> one_at_a_time(jconv::OneCallAtATime());
    auto& eng = Engine();
    dnnl::stream stream(eng);
    memory x_mem(entry->x, eng, x), y_mem(entry->y, eng, y), user_w(entry->user_w, eng, w);
    memory scratch_mem(memory::desc({static_cast<int64_t>(entry->scratch_bytes) + 1},
                                    memory::data_type::u8, memory::format_tag::a),
                       eng, ThreadBuffer(0, entry->scratch_bytes + 1));
    memory w_mem = user_w;
    if (entry->reorder_w) {
      w_mem = memory(entry->prim_w, eng, ThreadBuffer(1, entry->prim_w.get_size()));
    }
    if (pass == kForward || pass == kBackwardData) {
      if (entry->reorder_w) {
        entry->reorder.execute(stream, {{DNNL_ARG_FROM, user_w}, {DNNL_ARG_TO, w_mem},
                                        {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      }
      if (pass == kForward) {
        entry->conv.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem},
                                     {DNNL_ARG_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      } else {
        entry->conv.execute(stream, {{DNNL_ARG_DIFF_DST, y_mem}, {DNNL_ARG_WEIGHTS, w_mem},
                                     {DNNL_ARG_DIFF_SRC, x_mem},
                                     {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      }
    } else {
      if (entry->reorder_act) {
        memory px(entry->prim_x, eng, ThreadBuffer(2, entry->prim_x.get_size()));
        memory py(entry->prim_y, eng, ThreadBuffer(3, entry->prim_y.get_size()));
        entry->reorder_x.execute(stream, {{DNNL_ARG_FROM, x_mem}, {DNNL_ARG_TO, px},
                                          {DNNL_ARG_SCRATCHPAD, scratch_mem}});
        entry->reorder_y.execute(stream, {{DNNL_ARG_FROM, y_mem}, {DNNL_ARG_TO, py},
                                          {DNNL_ARG_SCRATCHPAD, scratch_mem}});
        x_mem = px;
        y_mem = py;
      }
      entry->conv.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_DIFF_DST, y_mem},
                                   {DNNL_ARG_DIFF_WEIGHTS, w_mem},
                                   {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      if (entry->reorder_w) {
        entry->reorder.execute(stream, {{DNNL_ARG_FROM, w_mem}, {DNNL_ARG_TO, user_w},
                                        {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      }
    }
    stream.wait();
    jconv::TrimThreadBuffers();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn conv: ") + e.what());
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("onednn conv: ") + e.what());
  }
  return ffi::Error::Success();
}

#define JCONV_WINDOW_ATTRS                          \
  .Attr<ffi::Span<const int64_t>>("stride")         \
      .Attr<ffi::Span<const int64_t>>("dilation")   \
      .Attr<ffi::Span<const int64_t>>("pad_lo")     \
      .Attr<ffi::Span<const int64_t>>("pad_hi")     \
      .Attr<int64_t>("groups")

using Window = ffi::Span<const int64_t>;

// y = conv(x, w)
ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
                   Window stride, Window dilation, Window pad_lo, Window pad_hi,
                   int64_t groups) {
  Geometry g;
  if (auto err = MakeGeometry(x.dimensions(), w.dimensions(), y->dimensions(), stride,
                              dilation, pad_lo, pad_hi, groups, &g);
      !err.success())
    return err;
  if (x.element_type() != w.element_type() || x.element_type() != y->element_type())
    return ffi::Error::InvalidArgument("onednn conv: x, w and y must share one dtype");
  return Run(kForward, x.element_type(), x.untyped_data(), w.untyped_data(),
             y->untyped_data(), y->size_bytes(), g);
}

// dx = the transpose of conv(., w) applied to dy
ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                        Window stride, Window dilation, Window pad_lo, Window pad_hi,
                        int64_t groups) {
  Geometry g;
  if (auto err = MakeGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(), stride,
                              dilation, pad_lo, pad_hi, groups, &g);
      !err.success())
    return err;
  if (dy.element_type() != w.element_type() || dy.element_type() != dx->element_type())
    return ffi::Error::InvalidArgument("onednn conv: dy, w and dx must share one dtype");
  return Run(kBackwardData, dy.element_type(), dx->untyped_data(), w.untyped_data(),
             dy.untyped_data(), dx->size_bytes(), g);
}

// dw = the transpose of conv(x, .) applied to dy
ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                           Window stride, Window dilation, Window pad_lo, Window pad_hi,
                           int64_t groups) {
  Geometry g;
  if (auto err = MakeGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(), stride,
                              dilation, pad_lo, pad_hi, groups, &g);
      !err.success())
    return err;
  if (x.element_type() != dy.element_type() || x.element_type() != dw->element_type())
    return ffi::Error::InvalidArgument("onednn conv: x, dy and dw must share one dtype");
  return Run(kBackwardWeights, x.element_type(), x.untyped_data(), dw->untyped_data(),
             dy.untyped_data(), dw->size_bytes(), g);
}

}  // namespace

// The exported symbols: built with -fvisibility=hidden, they need default visibility.
#pragma GCC visibility push(default)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnConvForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_WINDOW_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnConvBackwardData, BackwardData,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_WINDOW_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnConvBackwardWeights, BackwardWeights,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_WINDOW_ATTRS);

extern "C" {

// 1 if this CPU has oneDNN forward and both backward convolutions for the dtype
// (0: float32, 1: bfloat16), else 0. oneDNN's bfloat16 convolutions need avx512_core
// (or newer); without it jconv computes bfloat16 in float32.
int jconv_onednn_supports(int dtype) {
  const memory::data_type dt = dtype == 1 ? memory::data_type::bf16 : memory::data_type::f32;
  Geometry g;
  g.n = 1; g.c = 4; g.k = 4; g.groups = 1;
  g.in = {6, 6}; g.ker = {3, 3}; g.out = {4, 4};
  g.stride = {1, 1}; g.dilation = {1, 1}; g.pad_lo = {0, 0}; g.pad_hi = {0, 0};
  try {
    for (Pass pass : {kForward, kBackwardData, kBackwardWeights}) Build(pass, g, dt);
  } catch (const std::exception&) {
    return 0;
  }
  return 1;
}

// oneDNN's version as major * 10000 + minor * 100 + patch.
int jconv_onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return v->major * 10000 + v->minor * 100 + v->patch;
}

// Primitives held by the cache.
int jconv_onednn_cache_size() { return static_cast<int>(GlobalCache().Size()); }

// Bounds the cache (default 256 primitives); the least recently used go first.
void jconv_onednn_set_cache_capacity(int capacity) {
  GlobalCache().SetCapacity(capacity < 1 ? 1 : static_cast<size_t>(capacity));
}

}  // extern "C"

#pragma GCC visibility pop
