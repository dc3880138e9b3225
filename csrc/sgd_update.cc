// SGD with momentum, one array's update in one pass, as an XLA FFI handler.
//
//   g1 = g + wd * p                  (the L2 term added to the gradient)
//   m' = mu * m + g1                 (the momentum buffer)
//   u  = g1 + mu * m'  (nesterov)  or  m'
//   p' = p - lr * u
//   total = sum(p')                  (summed in double; NaN or infinite where some p' is,
//                                     or where the sum passes float32's 3.4e38)
//
// optax's chain(add_decayed_weights(wd), sgd(1, momentum=mu, nesterov)) followed by the
// step's update at rate lr, which XLA:CPU runs as separate loops over each array (one
// writing g1, one m', one p', and a reduction reading p' again). Here each element is read
// and written once: p, g, m in; p', m' out. float32, any shape; OpenMP over the elements.

#include <cstdint>

#include <omp.h>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

ffi::Error SgdUpdate(ffi::Buffer<ffi::F32> p, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> m,
                     ffi::Buffer<ffi::F32> lr, ffi::ResultBuffer<ffi::F32> p_out,
                     ffi::ResultBuffer<ffi::F32> m_out, ffi::ResultBuffer<ffi::F32> total,
                     float momentum, float weight_decay, int64_t nesterov) {
  const int64_t n = static_cast<int64_t>(p.element_count());
  if (static_cast<int64_t>(g.element_count()) != n || static_cast<int64_t>(m.element_count()) != n) {
    return ffi::Error::InvalidArgument("sgd update: p, g and m must have the same size");
  }
  if (lr.element_count() != 1) {
    return ffi::Error::InvalidArgument("sgd update: lr must be a scalar");
  }
  const float* __restrict__ pp = p.typed_data();
  const float* __restrict__ gp = g.typed_data();
  const float* __restrict__ mp = m.typed_data();
  float* __restrict__ po = p_out->typed_data();
  float* __restrict__ mo = m_out->typed_data();
  const float rate = lr.typed_data()[0], mu = momentum, wd = weight_decay;
  double sum = 0.0;
  // Small arrays (biases, BatchNorm scales) are not worth waking the threads for.
  const bool parallel = n >= (int64_t{1} << 16);
  if (nesterov) {
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (parallel)
    for (int64_t i = 0; i < n; ++i) {
      const float g1 = gp[i] + wd * pp[i];
      const float m1 = mu * mp[i] + g1;
      const float p1 = pp[i] - rate * (g1 + mu * m1);
      mo[i] = m1;
      po[i] = p1;
      sum += p1;
    }
  } else {
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (parallel)
    for (int64_t i = 0; i < n; ++i) {
      const float g1 = gp[i] + wd * pp[i];
      const float m1 = mu * mp[i] + g1;
      const float p1 = pp[i] - rate * m1;
      mo[i] = m1;
      po[i] = p1;
      sum += p1;
    }
  }
  total->typed_data()[0] = static_cast<float>(sum);  // past 3.4e38: infinite
  return ffi::Error::Success();
}

}  // namespace

#pragma GCC visibility push(default)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JconvSgdUpdate, SgdUpdate,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("momentum")
                                  .Attr<float>("weight_decay")
                                  .Attr<int64_t>("nesterov"));

#pragma GCC visibility pop
