// AGR on the CPU in two passes over each gradient, with no temporary tensor.
//
//   pass 1: l1 = sum |g|, plus sum g^2 and max |g| for the diagnostics (same read)
//   pass 2: g <- g - g * (|g| / l1)           (skipped when l1 == 0; NaN/inf propagate)
//
// Eager PyTorch needs about six passes and a full-size temporary for the same work
// (abs, sum, divide, multiply-add); this is the memory-traffic floor for a separate
// rescale pass. The sums are accumulated in double (a float32 running sum drops the
// small terms once it is large), which still vectorises and costs nothing here: the
// pass is limited by memory, not arithmetic.
//
// There is deliberately no fused AGR+AdamW step here: the AGR arm of a comparison runs the
// optimizer's own step (torch's fused AdamW, timm's Adan) on the rescaled gradients, so the
// two arms differ by AGR alone and not by kernel rounding.
//
// Built on first use by agr.regularizer through torch.utils.cpp_extension. Hot loops are
// compiled twice (AVX2 and baseline x86-64) and picked at run time, so a build cached on a
// shared home directory still runs on every node.

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kBlock = 4096;      // elements per partial sum
constexpr int64_t kParallel = 65536;  // below this, one thread is faster than waking the pool

struct Moments {
  double l1 = 0.0;
  double l2sq = 0.0;
  double maxabs = 0.0;
};

#if defined(__x86_64__) && defined(__GNUC__)
#define AGR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define AGR_CLONES
#endif

template <typename T>
AGR_CLONES Moments moments(const T* g, int64_t n) {
  double l1 = 0.0, l2sq = 0.0, maxabs = 0.0;
#pragma omp parallel for reduction(+ : l1, l2sq) reduction(max : maxabs) schedule(static) if (n > kParallel)
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t end = std::min(begin + kBlock, n);
    double s1 = 0, s2 = 0;
    T mx = 0;
#pragma omp simd reduction(+ : s1, s2) reduction(max : mx)
    for (int64_t i = begin; i < end; ++i) {
      const double a = std::abs(static_cast<double>(g[i]));
      s1 += a;
      s2 += a * a;
      mx = static_cast<T>(a) > mx ? static_cast<T>(a) : mx;
    }
    l1 += s1;
    l2sq += s2;
    maxabs = std::max(maxabs, static_cast<double>(mx));
  }
  return {l1, l2sq, maxabs};
}

// alpha = |g| / l1 is exactly 1 where g holds all of the tensor's L1 mass (a one-element
// tensor, or its only nonzero element), and the formula gives g - g = 0 there; the
// reciprocal's |g| * (1/l1) can miss 1 by a rounding and leave about 1e-7 * g, which an
// Adam-type step would scale up to a full-size update. So that element is set to 0, as the
// torch and foreach paths (which divide) give; every other element is computed as before.
template <typename T>
AGR_CLONES void rescale(T* g, int64_t n, T inv, T l1) {
#pragma omp parallel for simd schedule(static) if (n > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    const T a = std::abs(g[i]);
    g[i] = a == l1 ? T(0) : g[i] - g[i] * (a * inv);
  }
}

// For a sum so small that 1/l1 overflows T (float32: l1 below about 2.9e-39), alpha in double.
template <typename T>
void rescale_tiny(T* g, int64_t n, double l1) {
  for (int64_t i = 0; i < n; ++i) {
    const double alpha = std::abs(static_cast<double>(g[i])) / l1;
    g[i] = static_cast<T>(static_cast<double>(g[i]) * (1.0 - alpha));
  }
}

template <typename T>
Moments agr_one(torch::Tensor& grad) {
  T* g = grad.data_ptr<T>();
  const int64_t n = grad.numel();
  Moments m = moments(g, n);
  if (m.l1 == 0.0) return m;  // all zeros: unchanged
  // A NaN or inf element makes l1 NaN or inf; the rescale then propagates it as the torch
  // and foreach paths do (1/inf = 0: an inf element becomes NaN, finite ones stay; 1/NaN:
  // every element NaN), so the engine's divergence check sees it on every backend.
  const T inv = T(1) / static_cast<T>(m.l1);
  if (std::isinf(inv)) {
    rescale_tiny(g, n, m.l1);
  } else {
    // (an inf l1 matches no element: inf elements still become NaN, as on the other paths)
    const T whole = std::isfinite(m.l1) ? static_cast<T>(m.l1) : std::numeric_limits<T>::quiet_NaN();
    rescale(g, n, inv, whole);
  }
  return m;
}

}  // namespace

// Applies AGR in place to each tensor (contiguous, CPU, float32 or float64) and returns
// a float64 tensor of shape [len(grads), 3]: sum|g|, sum g^2 and max|g| before the update.
torch::Tensor agr_inplace(std::vector<torch::Tensor> grads) {
  auto stats = torch::empty({static_cast<int64_t>(grads.size()), 3}, torch::kFloat64);
  auto out = stats.accessor<double, 2>();
  for (size_t k = 0; k < grads.size(); ++k) {
    auto& grad = grads[k];
    TORCH_CHECK(grad.device().is_cpu(), "agr_inplace: tensor ", k, " is not on the CPU");
    TORCH_CHECK(grad.is_contiguous(), "agr_inplace: tensor ", k, " is not contiguous");
    Moments m;
    if (grad.scalar_type() == torch::kFloat32) {
      m = agr_one<float>(grad);
    } else if (grad.scalar_type() == torch::kFloat64) {
      m = agr_one<double>(grad);
    } else {
      TORCH_CHECK(false, "agr_inplace: tensor ", k, " has dtype ", grad.scalar_type(),
                  "; only float32 and float64 are supported");
    }
    out[k][0] = m.l1;
    out[k][1] = m.l2sq;
    out[k][2] = m.maxabs;
  }
  return stats;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("agr_inplace", &agr_inplace, "AGR in place on contiguous float32/float64 CPU tensors");
}
