// oneDNN's matmul as an XLA FFI handler: c = op(a) @ op(b), op a transpose or not.
//
//   a (M, K), or (K, M) with transpose_a = 1
//   b (K, N), or (N, K) with transpose_b = 1
//   c (M, N)
// all row-major; a transposed operand is described by its strides, never copied. A linear
// layer's three passes are all of this form: y = x @ w, dx = dy @ w^T, dw = x^T @ dy.
//
// Primitives are cached by (dtype, M, K, N, transposes) in the bounded LRU cache of
// lru_cache.h; every call brings its own scratchpad from a buffer of its thread.

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lru_cache.h"
#include "onednn_common.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

struct Entry {
  memory::desc a, b, c;
  dnnl::primitive matmul;
  size_t scratch_bytes = 0;
};

// A row-major (rows, cols) array, or the transpose of one stored (cols, rows).
memory::desc Matrix(int64_t rows, int64_t cols, bool transposed, memory::data_type dt) {
  return memory::desc({rows, cols}, dt,
                      transposed ? memory::dims{1, rows} : memory::dims{cols, 1});
}

std::shared_ptr<const Entry> Build(int64_t m, int64_t k, int64_t n, bool ta, bool tb,
                                   memory::data_type dt) {
  auto entry = std::make_shared<Entry>();
  entry->a = Matrix(m, k, ta, dt);
  entry->b = Matrix(k, n, tb, dt);
  entry->c = Matrix(m, n, false, dt);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc pd(jconv::Engine(), entry->a, entry->b, entry->c, attr);
  entry->matmul = dnnl::matmul(pd);
  entry->scratch_bytes = pd.scratchpad_desc().get_size();
  return entry;
}

using Cache = jconv::LruCache<std::vector<int64_t>, const Entry>;

Cache& GlobalCache() {
  static Cache* cache = new Cache(256);  // never destroyed: handlers may run at exit
  return *cache;
}

ffi::Error Matmul(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> c,
                  int64_t transpose_a, int64_t transpose_b) {
  auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  if (ad.size() != 2 || bd.size() != 2 || cd.size() != 2) {
    return ffi::Error::InvalidArgument("onednn matmul: a, b and c must be matrices");
  }
  const bool ta = transpose_a != 0, tb = transpose_b != 0;
  const int64_t m = ta ? ad[1] : ad[0], k = ta ? ad[0] : ad[1];
  const int64_t kb = tb ? bd[1] : bd[0], n = tb ? bd[0] : bd[1];
  if (k != kb || cd[0] != m || cd[1] != n) {
    return ffi::Error::InvalidArgument("onednn matmul: shapes of a, b and c disagree");
  }
  if (a.element_type() != b.element_type() || a.element_type() != c->element_type()) {
    return ffi::Error::InvalidArgument("onednn matmul: a, b and c must share one dtype");
  }
  memory::data_type dt;
  if (!jconv::DataType(a.element_type(), &dt)) {
    return ffi::Error::InvalidArgument("onednn matmul: dtype must be float32 or bfloat16");
  }
  if (m * n == 0) return ffi::Error::Success();
  if (k == 0) {  // the sum over nothing is zero
    std::memset(c->untyped_data(), 0, c->size_bytes());
    return ffi::Error::Success();
  }
  try {
    std::vector<int64_t> key{static_cast<int64_t>(dt), m, k, n, ta, tb};
    auto entry = GlobalCache().Get(key, [&] { return Build(m, k, n, ta, tb, dt); });
    std::lock_guard<std::mutex> one_at_a_time(jconv::OneCallAtATime());
    auto& eng = jconv::Engine();
    dnnl::stream stream(eng);
    memory a_mem(entry->a, eng, a.untyped_data()), b_mem(entry->b, eng, b.untyped_data());
    memory c_mem(entry->c, eng, c->untyped_data());
    memory scratch(memory::desc({static_cast<int64_t>(entry->scratch_bytes) + 1},
                                memory::data_type::u8, memory::format_tag::a),
                   eng, jconv::ThreadBuffer(0, entry->scratch_bytes + 1));
    entry->matmul.execute(stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem},
                                   {DNNL_ARG_DST, c_mem}, {DNNL_ARG_SCRATCHPAD, scratch}});
    stream.wait();
    jconv::TrimThreadBuffers();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("onednn matmul: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

#pragma GCC visibility push(default)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvOnednnMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("transpose_a")
                                  .Attr<int64_t>("transpose_b"));

extern "C" {

// Matmul primitives held by the cache.
int jconv_onednn_matmul_cache_size() { return static_cast<int>(GlobalCache().Size()); }

}  // extern "C"

#pragma GCC visibility pop
