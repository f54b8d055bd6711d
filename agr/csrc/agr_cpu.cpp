// AGR on the CPU in two passes over each gradient, with no temporary tensor.
//
//   pass 1: l1 = sum |g|, plus sum g^2 and max |g| for the diagnostics (same read)
//   pass 2: g <- g - g * (|g| / l1)           (skipped when l1 == 0)
//
// Eager PyTorch needs about six passes and a full-size temporary for the same work
// (abs, sum, divide, multiply-add); this is the memory-traffic floor for a separate
// rescale pass. The sums are accumulated in double (a float32 running sum drops the
// small terms once it is large), which still vectorises and costs nothing here: the
// pass is limited by memory, not arithmetic.
//
// agr_adamw_ does the same inside one AdamW update: the rescaled gradient goes straight
// into the moments while it is still in cache, so AGR costs one extra read of each
// gradient (its L1 sum) and the write-back of p.grad.
//
// Built on first use by agr.regularizer through torch.utils.cpp_extension. Hot loops are
// compiled twice (AVX2 and baseline x86-64) and picked at run time, so a build cached on a
// shared home directory still runs on every node.

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
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

template <typename T>
AGR_CLONES void rescale(T* g, int64_t n, T l1) {
  const T inv = T(1) / l1;
#pragma omp parallel for simd schedule(static) if (n > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    g[i] = g[i] - g[i] * (std::abs(g[i]) * inv);
  }
}

struct AdamWScalars {
  double lr, beta1, beta2, eps, weight_decay, step;
};

// One AdamW update (torch.optim.AdamW's algorithm, decoupled weight decay), on the AGR'd
// gradient when inv_l1 > 0 (inv_l1 = 1 / sum|g|), which is also written back to grad.
template <typename T, bool kAGR>
AGR_CLONES void adamw_update(T* p, T* g, T* m, T* v, int64_t n, T inv_l1, const AdamWScalars& s) {
  // The arithmetic follows torch's fused CPU AdamW step, so the two agree to rounding.
  const T decay = static_cast<T>(1.0 - s.lr * s.weight_decay);
  const T one_minus_beta1 = static_cast<T>(1.0 - s.beta1);
  const T beta2 = static_cast<T>(s.beta2);
  const T one_minus_beta2 = static_cast<T>(1.0 - s.beta2);
  const T step_size = static_cast<T>(s.lr / (1.0 - std::pow(s.beta1, s.step)));
  const T bc2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(s.beta2, s.step)));
  const T eps = static_cast<T>(s.eps);
#pragma omp parallel for simd schedule(static) if (n > kParallel)
  for (int64_t i = 0; i < n; ++i) {
    T grad = g[i];
    if (kAGR) {
      grad = grad - grad * (std::abs(grad) * inv_l1);
      g[i] = grad;
    }
    const T mi = m[i] + one_minus_beta1 * (grad - m[i]);
    const T vi = beta2 * v[i] + one_minus_beta2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
  }
}

template <typename T>
Moments agr_adamw_one(torch::Tensor& p, torch::Tensor& g, torch::Tensor& m, torch::Tensor& v,
                      bool agr, const AdamWScalars& s) {
  const int64_t n = p.numel();
  Moments mo;
  if (agr) mo = moments(g.data_ptr<T>(), n);
  if (agr && mo.l1 > 0.0) {
    adamw_update<T, true>(p.data_ptr<T>(), g.data_ptr<T>(), m.data_ptr<T>(), v.data_ptr<T>(), n,
                          static_cast<T>(1.0 / mo.l1), s);
  } else {
    adamw_update<T, false>(p.data_ptr<T>(), g.data_ptr<T>(), m.data_ptr<T>(), v.data_ptr<T>(), n,
                           T(0), s);
  }
  return mo;
}

template <typename T>
Moments agr_one(torch::Tensor& grad) {
  T* g = grad.data_ptr<T>();
  const int64_t n = grad.numel();
  Moments m = moments(g, n);
  if (m.l1 > 0.0) rescale(g, n, static_cast<T>(m.l1));
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

// AGR (where agr[k]) and one AdamW step for each parameter; steps[k] (a 0-d float32
// tensor, torch's own state["step"]) is incremented first. All tensors contiguous, CPU,
// one dtype per parameter (float32 or float64). Returns the AGR moments as agr_inplace
// does (zeros where agr[k] is false).
torch::Tensor agr_adamw_(std::vector<torch::Tensor> params, std::vector<torch::Tensor> grads,
                         std::vector<torch::Tensor> exp_avgs,
                         std::vector<torch::Tensor> exp_avg_sqs, std::vector<torch::Tensor> steps,
                         std::vector<bool> agr, double lr, double beta1, double beta2, double eps,
                         double weight_decay) {
  const size_t count = params.size();
  TORCH_CHECK(grads.size() == count && exp_avgs.size() == count && exp_avg_sqs.size() == count &&
                  steps.size() == count && agr.size() == count,
              "agr_adamw_: argument lists differ in length");
  auto stats = torch::zeros({static_cast<int64_t>(count), 3}, torch::kFloat64);
  auto out = stats.accessor<double, 2>();
  for (size_t k = 0; k < count; ++k) {
    auto& p = params[k];
    const auto dtype = p.scalar_type();
    for (const auto* t : {&grads[k], &exp_avgs[k], &exp_avg_sqs[k]}) {
      TORCH_CHECK(t->scalar_type() == dtype && t->numel() == p.numel() && t->is_contiguous() &&
                      t->device().is_cpu(),
                  "agr_adamw_: parameter ", k, " has a gradient or state of another dtype, size, "
                  "layout or device");
    }
    TORCH_CHECK(p.is_contiguous() && p.device().is_cpu(), "agr_adamw_: parameter ", k,
                " is not a contiguous CPU tensor");
    steps[k].add_(1);
    const AdamWScalars s{lr, beta1, beta2, eps, weight_decay, steps[k].item<double>()};
    Moments mo;
    if (dtype == torch::kFloat32) {
      mo = agr_adamw_one<float>(p, grads[k], exp_avgs[k], exp_avg_sqs[k], agr[k], s);
    } else if (dtype == torch::kFloat64) {
      mo = agr_adamw_one<double>(p, grads[k], exp_avgs[k], exp_avg_sqs[k], agr[k], s);
    } else {
      TORCH_CHECK(false, "agr_adamw_: parameter ", k, " has dtype ", dtype,
                  "; only float32 and float64 are supported");
    }
    out[k][0] = mo.l1;
    out[k][1] = mo.l2sq;
    out[k][2] = mo.maxabs;
  }
  return stats;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("agr_inplace", &agr_inplace, "AGR in place on contiguous float32/float64 CPU tensors");
  m.def("agr_adamw_", &agr_adamw_, "AGR and one AdamW step in one pass per parameter");
}
