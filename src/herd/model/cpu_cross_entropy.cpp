// herd's softmax cross-entropy of a chunk of logits, in place, for fp32 training on x86 CPUs (AVX512F):
// herd::softmax_cross_entropy_(logits, targets, ignore_index, write_grad) -> summed loss.
//
// For each row x of logits (rows, vocab) with target t: loss = logsumexp(x) - x[t], and with
// write_grad the row becomes the loss's gradient, softmax(x) - onehot(t) (zeros for rows whose
// target is ignore_index, which add no loss). One row (128 KB for a 32,000 vocabulary) stays in
// the core's cache through the three passes: max; exp(x - max) written in place and summed;
// scaled by 1 / sum. PyTorch's ops take log_softmax (two exponentials per logit) and then exp_,
// scatter and mask, each a pass over the whole chunk. The loss is summed over rows in double,
// in row order, so it does not depend on how rows were split among threads.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <immintrin.h>
#include <torch/library.h>

#include "avx512_exp.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using herd::exp16;
using herd::lanes;

// The row's loss; with write_grad the row becomes softmax(row) - onehot(target).
double row_loss(float* row, int64_t n, int64_t target, bool write_grad) {
  const float picked = row[target];
  __m512 mx16 = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = lanes(n - j);
    mx16 = _mm512_mask_max_ps(mx16, m, mx16, _mm512_maskz_loadu_ps(m, row + j));
  }
  const float mx = _mm512_reduce_max_ps(mx16);
  const __m512 shift = _mm512_set1_ps(mx);
  __m512 sum16 = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = lanes(n - j);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), shift));
    if (write_grad) _mm512_mask_storeu_ps(row + j, m, e);
    sum16 = _mm512_add_ps(sum16, _mm512_maskz_mov_ps(m, e));
  }
  const float sum = _mm512_reduce_add_ps(sum16);
  if (write_grad) {
    const __m512 inv = _mm512_set1_ps(1.f / sum);
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = lanes(n - j);
      _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
    }
    row[target] -= 1.f;
  }
  return static_cast<double>(mx) + std::log(static_cast<double>(sum)) - picked;
}

at::Tensor softmax_cross_entropy_(at::Tensor logits, const at::Tensor& targets, int64_t ignore_index,
                                  bool write_grad) {
  TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.device().is_cpu() &&
                  logits.stride(1) == 1,
              "softmax_cross_entropy_: logits must be a float32 CPU matrix with contiguous rows");
  TORCH_CHECK(targets.dim() == 1 && targets.scalar_type() == at::kLong && targets.size(0) == logits.size(0) &&
                  targets.is_contiguous(),
              "softmax_cross_entropy_: targets must be contiguous int64, one per row of logits");
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const int64_t* t = targets.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK(t[r] == ignore_index || (t[r] >= 0 && t[r] < vocab), "softmax_cross_entropy_: target ", t[r],
                " of row ", r, " is outside the vocabulary of ", vocab);
  }
  std::vector<double> losses(rows, 0.0);
  float* data = logits.data_ptr<float>();
  const int64_t stride = logits.stride(0);
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = data + r * stride;
      if (t[r] == ignore_index) {
        if (write_grad) std::fill(row, row + vocab, 0.f);
      } else {
        losses[r] = row_loss(row, vocab, t[r], write_grad);
      }
    }
  });
  double total = 0.0;
  for (const double loss : losses) total += loss;
  at::Tensor out = at::empty({}, logits.options());
  out.fill_(total);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(herd, m) {
  m.def("softmax_cross_entropy_(Tensor(a!) logits, Tensor targets, int ignore_index, bool write_grad) -> Tensor");
}

TORCH_LIBRARY_IMPL(herd, CPU, m) { m.impl("softmax_cross_entropy_", &softmax_cross_entropy_); }
