// oneDNN pooling and local response normalisation as XLA FFI handlers.
//
// Layouts are JAX's channels-last ones, with 1, 2 or 3 spatial axes:
//   x, dx  (N, *S, C)     input
//   y, dy  (N, *S', C)    output
//   ws     (N, *S', C)    max pooling's workspace: the row-major index within the window
//                         of the tap its gradient goes to, each window's first maximum
//                         where it holds no NaN (u8 for windows of < 256 taps, else s32)
// Max pooling's forward is jconv's (max_pool_scatter.h: NaN and ties as lax), as is its
// float32 backward; the other passes run oneDNN.
// Pooling attributes: kernel, stride, pad_lo, pad_hi (one per spatial axis) and, for the
// average, include_pad (1: divide by the window size, 0: by the taps on the input). LRN
// attributes: size, alpha (oneDNN's, i.e. already multiplied by size), beta, k; LRN is
// per pixel, so its spatial axes are flattened into one.
//
// Primitives are cached by (kind, dtype, shapes, window) in a bounded LRU cache behind a
// mutex, as the convolutions are (onednn_conv.cc); every call brings its own scratchpad
// (scratchpad_mode::user) from a buffer of its thread.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "lru_cache.h"
#include "max_pool_scatter.h"
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

enum Kind : int64_t {
  kMaxForward = 0, kMaxBackward = 1, kAvgForward = 2, kAvgBackward = 3,
  kLrnForward = 4, kLrnBackward = 5,
};

bool IsBackward(Kind kind) { return kind % 2 == 1; }

// One pooling or LRN call, as JAX sees it. LRN uses n, c, in (the flattened pixels) and
// size, alpha, beta, k.
struct Geometry {
  int64_t n = 0, c = 0;
  std::vector<int64_t> in, out, kernel, stride, pad_lo, pad_hi;
  bool include_pad = true;
  int64_t size = 0;
  float alpha = 0, beta = 0, k = 0;
};

memory::data_type IndexType(const Geometry& g) {
  int64_t taps = 1;
  for (int64_t k : g.kernel) taps *= k;
  return taps < 256 ? memory::data_type::u8 : memory::data_type::s32;
}

// Everything one call needs, built once per key and never changed after.
struct Entry {
  memory::desc src, dst, ws;
  dnnl::primitive prim;
  size_t scratch_bytes = 0;
};

std::shared_ptr<const Entry> Build(Kind kind, const Geometry& g, memory::data_type dt) {
  auto& eng = Engine();
  auto entry = std::make_shared<Entry>();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto training = dnnl::prop_kind::forward_training;
  if (kind == kLrnForward || kind == kLrnBackward) {
    const std::vector<int64_t> pixels{1, g.in[0]};  // (N, C, 1, P): the same bytes
    entry->src = entry->dst = Activation(g.n, g.c, pixels, dt);
    const auto algo = dnnl::algorithm::lrn_across_channels;
    // Inference forward: no workspace to hand over; the backward reads x instead.
    dnnl::lrn_forward::primitive_desc fwd(
        eng, kind == kLrnForward ? dnnl::prop_kind::forward_inference : training, algo,
        entry->src, entry->dst, g.size, g.alpha, g.beta, g.k, attr);
    if (kind == kLrnForward) {
      entry->prim = dnnl::lrn_forward(fwd);
      entry->scratch_bytes = fwd.scratchpad_desc().get_size();
      return entry;
    }
    dnnl::lrn_backward::primitive_desc bwd(eng, algo, entry->dst, entry->src, entry->src,
                                           g.size, g.alpha, g.beta, g.k, fwd, attr);
    // The handler keeps no forward workspace: take the first kernel that needs none (on
    // AVX-512 oneDNN offers a workspace kernel first).
    while (bwd.workspace_desc().get_size() != 0)
      if (!bwd.next_impl())
        throw std::runtime_error("every LRN backward oneDNN offers needs a workspace");
    entry->prim = dnnl::lrn_backward(bwd);
    entry->scratch_bytes = bwd.scratchpad_desc().get_size();
    return entry;
  }
  entry->src = Activation(g.n, g.c, g.in, dt);
  entry->dst = Activation(g.n, g.c, g.out, dt);
  const bool max = kind == kMaxForward || kind == kMaxBackward;
  const auto algo = max ? dnnl::algorithm::pooling_max
                  : g.include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                  : dnnl::algorithm::pooling_avg_exclude_padding;
  memory::dims dilation(g.in.size(), 0);
  dnnl::pooling_forward::primitive_desc fwd(eng, training, algo, entry->src, entry->dst,
                                            g.stride, g.kernel, dilation, g.pad_lo,
                                            g.pad_hi, attr);
  if (max) {
    entry->ws = Activation(g.n, g.c, g.out, IndexType(g));
    if (fwd.workspace_desc() != entry->ws)
      throw std::runtime_error("max pooling's workspace is not (N, *S', C) indices");
  }
  if (!IsBackward(kind)) {
    entry->prim = dnnl::pooling_forward(fwd);
    entry->scratch_bytes = fwd.scratchpad_desc().get_size();
    return entry;
  }
  dnnl::pooling_backward::primitive_desc bwd(eng, algo, entry->src, entry->dst, g.stride,
                                             g.kernel, dilation, g.pad_lo, g.pad_hi, fwd,
                                             attr);
  if (max && bwd.workspace_desc() != entry->ws)
    throw std::runtime_error("max pooling's backward wants another workspace");
  entry->prim = dnnl::pooling_backward(bwd);
  entry->scratch_bytes = bwd.scratchpad_desc().get_size();
  return entry;
}

using Cache = jconv::LruCache<std::vector<int64_t>, const Entry>;

Cache& GlobalCache() {
  static Cache* cache = new Cache(256);  // never destroyed: handlers may run at exit
  return *cache;
}

std::vector<int64_t> MakeKey(Kind kind, memory::data_type dt, const Geometry& g) {
  std::vector<int64_t> key{kind, static_cast<int64_t>(dt), g.n, g.c,
                           static_cast<int64_t>(g.in.size()), g.include_pad, g.size};
  for (const auto* v : {&g.in, &g.out, &g.kernel, &g.stride, &g.pad_lo, &g.pad_hi})
    key.insert(key.end(), v->begin(), v->end());
  for (float f : {g.alpha, g.beta, g.k}) {
    int32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    key.push_back(bits);
  }
  return key;
}

// Runs one primitive. src/dst are x/y forward, dx/dy backward; ws is max pooling's
// workspace (written forward, read backward); lrn_x is x for LRN's backward.
ffi::Error Run(Kind kind, ffi::DataType type, const Geometry& g, void* src, void* dst,
               void* ws, void* lrn_x, size_t out_bytes) {
  memory::data_type dt;
  if (!DataType(type, &dt))
    return ffi::Error::InvalidArgument("onednn pool: dtype must be float32 or bfloat16");
  int64_t elements = g.n * g.c;
  for (int64_t s : g.in) elements *= s;
  for (int64_t s : g.out) elements *= s;
  if (elements == 0) {
    std::memset(IsBackward(kind) ? src : dst, 0, out_bytes);
    return ffi::Error::Success();
  }
  try {
    auto entry = GlobalCache().Get(MakeKey(kind, dt, g), [&] { return Build(kind, g, dt); });
    std::lock_guard<std::mutex> one_at_a_time(jconv::OneCallAtATime());
    auto& eng = Engine();
    dnnl::stream stream(eng);
    memory src_mem(entry->src, eng, src), dst_mem(entry->dst, eng, dst);
    memory scratch(memory::desc({static_cast<int64_t>(entry->scratch_bytes) + 1},
                                memory::data_type::u8, memory::format_tag::a),
                   eng, ThreadBuffer(0, entry->scratch_bytes + 1));
    std::unordered_map<int, memory> args{{DNNL_ARG_SCRATCHPAD, scratch}};
    if (IsBackward(kind)) {
      args.insert({DNNL_ARG_DIFF_SRC, src_mem});
      args.insert({DNNL_ARG_DIFF_DST, dst_mem});
      if (kind == kLrnBackward) args.insert({DNNL_ARG_SRC, memory(entry->src, eng, lrn_x)});
    } else {
      args.insert({DNNL_ARG_SRC, src_mem});
      args.insert({DNNL_ARG_DST, dst_mem});
    }
    if (kind == kMaxForward || kind == kMaxBackward)
      args.insert({DNNL_ARG_WORKSPACE, memory(entry->ws, eng, ws)});
    entry->prim.execute(stream, args);
    stream.wait();
    jconv::TrimThreadBuffers();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("onednn pool: ") + e.what());
  }
  return ffi::Error::Success();
}

using Span = ffi::Span<const int64_t>;

// Reads a pooling geometry off x's and y's shapes and checks that they agree.
ffi::Error PoolGeometry(Span x, Span y, Span kernel, Span stride, Span pad_lo, Span pad_hi,
                        Geometry* g) {
  const size_t nd = x.size() - 2;
  if (x.size() < 3 || x.size() > 5 || y.size() != x.size() || kernel.size() != nd ||
      stride.size() != nd || pad_lo.size() != nd || pad_hi.size() != nd || x[0] != y[0] ||
      x[nd + 1] != y[nd + 1])
    return ffi::Error::InvalidArgument("onednn pool: shapes of x, y and window disagree");
  g->n = x[0];
  g->c = x[nd + 1];
  for (size_t i = 0; i < nd; ++i) {
    g->in.push_back(x[i + 1]);
    g->out.push_back(y[i + 1]);
    g->kernel.push_back(kernel[i]);
    g->stride.push_back(stride[i]);
    g->pad_lo.push_back(pad_lo[i]);
    g->pad_hi.push_back(pad_hi[i]);
    const int64_t span = x[i + 1] + pad_lo[i] + pad_hi[i] - kernel[i];
    if (kernel[i] < 1 || stride[i] < 1 || span < 0 || span / stride[i] + 1 != y[i + 1] ||
        pad_lo[i] >= kernel[i] || pad_hi[i] >= kernel[i])
      return ffi::Error::InvalidArgument("onednn pool: output size disagrees with the window");
  }
  return ffi::Error::Success();
}

ffi::Error LrnGeometry(Span x, Span y, int64_t size, float alpha, float beta, float k,
                       Geometry* g) {
  if (x.size() < 2 || x.size() != y.size() || !std::equal(x.begin(), x.end(), y.begin()) ||
      size < 1 || size % 2 == 0)
    return ffi::Error::InvalidArgument("onednn lrn: x and y differ, or size is not odd");
  g->n = x[0];
  g->c = x[x.size() - 1];
  int64_t pixels = 1;
  for (size_t i = 1; i + 1 < x.size(); ++i) pixels *= x[i];
  g->in = {pixels};
  g->size = size;
  g->alpha = alpha;
  g->beta = beta;
  g->k = k;
  return ffi::Error::Success();
}

#define JCONV_POOL_ATTRS                         \
  .Attr<Span>("kernel")                          \
      .Attr<Span>("stride")                      \
      .Attr<Span>("pad_lo")                      \
      .Attr<Span>("pad_hi")

#define JCONV_LRN_ATTRS \
  .Attr<int64_t>("size").Attr<float>("alpha").Attr<float>("beta").Attr<float>("k")

// One pooling pass: forward reads x (in) and writes y (out), backward reads dy (in) and
// writes dx (out); max pooling's workspace ws is written forward and read backward.
ffi::Error Pool(Kind kind, ffi::AnyBuffer in, ffi::Result<ffi::AnyBuffer> out, void* ws,
                size_t ws_bytes, Span kernel, Span stride, Span pad_lo, Span pad_hi,
                bool include_pad) {
  const bool bwd = IsBackward(kind);
  Geometry g;
  if (auto err = PoolGeometry(bwd ? out->dimensions() : in.dimensions(),
                              bwd ? in.dimensions() : out->dimensions(), kernel, stride,
                              pad_lo, pad_hi, &g); !err.success())
    return err;
  g.include_pad = include_pad;
  const size_t pooled = bwd ? in.element_count() : out->element_count();
  const size_t index_bytes = IndexType(g) == memory::data_type::u8 ? 1 : 4;
  if (in.element_type() != out->element_type() ||
      ((kind == kMaxForward || kind == kMaxBackward) && ws_bytes != pooled * index_bytes))
    return ffi::Error::InvalidArgument("onednn pool: dtypes of the arrays or ws disagree");
  void* x = bwd ? out->untyped_data() : in.untyped_data();
  void* y = bwd ? in.untyped_data() : out->untyped_data();
  return Run(kind, in.element_type(), g, x, y, ws, nullptr, out->size_bytes());
}

// (y, ws) = max_pool(x) by SelectMaxima: y is NaN where a window holds a NaN and ws
// records the tap XLA's select_and_scatter would pick, as lax does (oneDNN 3.2's forward
// skips NaN, and gives the lowest float for a window of NaN or -inf only).
ffi::Error MaxForward(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y,
                      ffi::Result<ffi::AnyBuffer> ws, Span kernel, Span stride, Span pad_lo,
                      Span pad_hi) {
  const ffi::DataType type = x.element_type();
  if ((type != ffi::DataType::F32 && type != ffi::DataType::BF16) ||
      y->element_type() != type)
    return ffi::Error::InvalidArgument("onednn pool: dtype must be float32 or bfloat16");
  Geometry g;
  if (auto err = PoolGeometry(x.dimensions(), y->dimensions(), kernel, stride, pad_lo,
                              pad_hi, &g); !err.success())
    return err;
  const bool wide = ws->element_type() == ffi::DataType::S32;
  if ((wide != (IndexType(g) == memory::data_type::s32)) ||
      (!wide && ws->element_type() != ffi::DataType::U8) ||
      ws->size_bytes() != y->element_count() * (wide ? 4 : 1))
    return ffi::Error::InvalidArgument("onednn pool: ws must be one uint8 or int32 per output");
  std::lock_guard<std::mutex> one_at_a_time(jconv::OneCallAtATime());
  jconv::SelectMaxima(x.untyped_data(), y->untyped_data(), ws->untyped_data(),
                      type == ffi::DataType::BF16, wide, g.n, g.c, g.in, g.out, g.kernel,
                      g.stride, g.pad_lo);
  return ffi::Error::Success();
}

// dx = the transpose of max_pool's derivative at the recorded maxima, applied to dy:
// float32 by ScatterToMaxima, bfloat16 (where oneDNN has its kernels) by oneDNN.
ffi::Error MaxBackward(ffi::AnyBuffer dy, ffi::AnyBuffer ws, ffi::Result<ffi::AnyBuffer> dx,
                       Span kernel, Span stride, Span pad_lo, Span pad_hi) {
  if (dy.element_type() != ffi::DataType::F32 || dx->element_type() != ffi::DataType::F32)
    return Pool(kMaxBackward, dy, dx, ws.untyped_data(), ws.size_bytes(), kernel, stride,
                pad_lo, pad_hi, false);
  Geometry g;
  if (auto err = PoolGeometry(dx->dimensions(), dy.dimensions(), kernel, stride, pad_lo,
                              pad_hi, &g); !err.success())
    return err;
  const size_t pooled = dy.element_count();
  const bool wide = ws.element_type() == ffi::DataType::S32;
  if (ws.size_bytes() != pooled * (wide ? 4 : 1) ||
      (!wide && ws.element_type() != ffi::DataType::U8))
    return ffi::Error::InvalidArgument("onednn pool: ws must be one uint8 or int32 per output");
  const auto* g_in = static_cast<const float*>(dy.untyped_data());
  auto* d_out = static_cast<float*>(dx->untyped_data());
  std::lock_guard<std::mutex> one_at_a_time(jconv::OneCallAtATime());
  jconv::ScatterToMaxima(g_in, ws.untyped_data(), wide, d_out, g.n, g.c, g.in, g.out,
                         g.kernel, g.stride, g.pad_lo);
  return ffi::Error::Success();
}

// y = avg_pool(x)
ffi::Error AvgForward(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, Span kernel,
                      Span stride, Span pad_lo, Span pad_hi, int64_t include_pad) {
  return Pool(kAvgForward, x, y, nullptr, 0, kernel, stride, pad_lo, pad_hi, include_pad);
}

// dx = avg_pool's transpose applied to dy
ffi::Error AvgBackward(ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dx, Span kernel,
                       Span stride, Span pad_lo, Span pad_hi, int64_t include_pad) {
  return Pool(kAvgBackward, dy, dx, nullptr, 0, kernel, stride, pad_lo, pad_hi, include_pad);
}

// y = lrn(x)
ffi::Error LrnForward(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, int64_t size,
                      float alpha, float beta, float k) {
  Geometry g;
  if (auto err = LrnGeometry(x.dimensions(), y->dimensions(), size, alpha, beta, k, &g);
      !err.success())
    return err;
  if (x.element_type() != y->element_type())
    return ffi::Error::InvalidArgument("onednn lrn: x and y must share one dtype");
  return Run(kLrnForward, x.element_type(), g, x.untyped_data(), y->untyped_data(), nullptr,
             nullptr, y->size_bytes());
}

// dx = (d lrn(x) / dx)^T dy
ffi::Error LrnBackward(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dx,
                       int64_t size, float alpha, float beta, float k) {
  Geometry g;
  if (auto err = LrnGeometry(x.dimensions(), dy.dimensions(), size, alpha, beta, k, &g);
      !err.success())
    return err;
  if (x.element_type() != dy.element_type() || x.element_type() != dx->element_type())
    return ffi::Error::InvalidArgument("onednn lrn: x, dy and dx must share one dtype");
  return Run(kLrnBackward, x.element_type(), g, dx->untyped_data(), dy.untyped_data(),
             nullptr, x.untyped_data(), dx->size_bytes());
}

}  // namespace

#pragma GCC visibility push(default)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnMaxPoolForward, MaxForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_POOL_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnMaxPoolBackward, MaxBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_POOL_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnAvgPoolForward, AvgForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_POOL_ATTRS
                                  .Attr<int64_t>("include_pad"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnAvgPoolBackward, AvgBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_POOL_ATTRS
                                  .Attr<int64_t>("include_pad"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnLrnForward, LrnForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_LRN_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnLrnBackward, LrnBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JCONV_LRN_ATTRS);

extern "C" {

// 1 if this CPU has oneDNN pooling and LRN, forward and backward, for the dtype
// (0: float32, 1: bfloat16), else 0.
int jconv_onednn_pool_supports(int dtype) {
  const memory::data_type dt = dtype == 1 ? memory::data_type::bf16 : memory::data_type::f32;
  Geometry pool;
  pool.n = 1; pool.c = 8; pool.in = {6, 6}; pool.out = {2, 2}; pool.kernel = {3, 3};
  pool.stride = {3, 3}; pool.pad_lo = {0, 0}; pool.pad_hi = {0, 0};
  Geometry lrn;
  lrn.n = 1; lrn.c = 8; lrn.in = {4}; lrn.size = 5; lrn.alpha = 1e-4f; lrn.beta = 0.75f;
  lrn.k = 2.0f;
  try {
    for (Kind kind : {kMaxForward, kMaxBackward, kAvgForward, kAvgBackward}) Build(kind, pool, dt);
    for (Kind kind : {kLrnForward, kLrnBackward}) Build(kind, lrn, dt);
  } catch (const std::exception&) {
    return 0;
  }
  return 1;
}

// Pooling and LRN primitives held by their cache.
int jconv_onednn_pool_cache_size() { return static_cast<int>(GlobalCache().Size()); }

// Bounds the pooling and LRN cache (default 256 primitives); the least recently used go first.
void jconv_onednn_pool_set_cache_capacity(int capacity) {
  GlobalCache().SetCapacity(capacity < 1 ? 1 : static_cast<size_t>(capacity));
}

}  // extern "C"

#pragma GCC visibility pop
