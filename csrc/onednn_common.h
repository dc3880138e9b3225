// What the oneDNN FFI handlers share: the CPU engine, JAX's channels-last arrays as oneDNN
// memory descriptors, the dtypes, and per-thread buffers.
//
// Included by onednn_conv.cc and onednn_pool.cc, compiled into one library: the inline
// functions below have one definition there, so both share one engine and one set of
// buffers per thread.

#ifndef JCONV_CSRC_ONEDNN_COMMON_H_
#define JCONV_CSRC_ONEDNN_COMMON_H_

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace jconv {

// The CPU engine every primitive runs on.
inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// An (N, *S, C) row-major array as oneDNN's logical (N, C, *S).
inline dnnl::memory::desc Activation(int64_t n, int64_t c, const std::vector<int64_t>& sizes,
                                     dnnl::memory::data_type dt) {
  dnnl::memory::dims dims{n, c}, strides{0, 1};
  int64_t inner = c;
  std::vector<int64_t> spatial(sizes.size());
  for (int i = static_cast<int>(sizes.size()) - 1; i >= 0; --i) {
    spatial[i] = inner;
    inner *= sizes[i];
  }
  strides[0] = inner;
  for (size_t i = 0; i < sizes.size(); ++i) {
    dims.push_back(sizes[i]);
    strides.push_back(spatial[i]);
  }
  return dnnl::memory::desc(dims, dt, strides);
}

// oneDNN's dtype for an XLA one: float32 and bfloat16 only (false otherwise).
inline bool DataType(xla::ffi::DataType t, dnnl::memory::data_type* dt) {
  if (t == xla::ffi::DataType::F32) {
    *dt = dnnl::memory::data_type::f32;
  } else if (t == xla::ffi::DataType::BF16) {
    *dt = dnnl::memory::data_type::bf16;
  } else {
    return false;
  }
  return true;
}

// Held by every call for its whole run, so one runs at a time: each spreads over every
// core with OpenMP, and XLA runs independent ops (and back-to-back dispatches) on several
// threads at once, whose OpenMP teams would otherwise fight for the cores (4-6x slower
// on 2 cores).
inline std::mutex& OneCallAtATime() {
  static std::mutex* running = new std::mutex();  // never destroyed: calls may run at exit
  return *running;
}

// This thread's 64-byte aligned buffers (0: scratchpad, 1: reordered weights, 2 and 3:
// reordered activations), grown as needed and reused: a call runs to completion on its
// thread before the next one starts.
struct ThreadBuffers {
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data[4];
  size_t sizes[4] = {0, 0, 0, 0};
};

inline ThreadBuffers& Buffers() {
  thread_local ThreadBuffers buffers;
  return buffers;
}

inline char* ThreadBuffer(int which, size_t bytes) {
  ThreadBuffers& b = Buffers();
  if (!b.data[which] || b.sizes[which] < bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64 + 64;
    b.data[which].reset(static_cast<char*>(std::aligned_alloc(64, rounded)));
    if (!b.data[which]) throw std::bad_alloc();
    b.sizes[which] = rounded;
  }
  return b.data[which].get();
}

// Frees this thread's buffers over 64 MiB once a call is done, so that a large batch's
// copies are not held between calls.
inline void TrimThreadBuffers() {
  constexpr size_t kKeep = size_t{64} << 20;
  ThreadBuffers& b = Buffers();
  for (int i = 0; i < 4; ++i) {
    if (b.sizes[i] > kKeep) {
      b.data[i].reset();
      b.sizes[i] = 0;
    }
  }
}

}  // namespace jconv

#endif  // JCONV_CSRC_ONEDNN_COMMON_H_
