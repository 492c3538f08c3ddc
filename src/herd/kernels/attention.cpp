// herd's causal attention for training on x86 CPUs (AVX512F), forward and backward, fp32:
// herd::causal_attention and herd::causal_attention_backward.
//
// out[i] = sum_j softmax_j(q[i] . k[j] / sqrt(D)) v[j] over the keys j in [first_key[i], i]: causal
// attention, inside the query's packed document when first_key is given (Llama 3 §3.2), else
// over every earlier key. Grouped-query heads: query head h reads key/value head h / (H / KV).
//
// Why not PyTorch's CPU flash attention: for a causal sequence of up to 512 tokens its blocks
// of queries multiply all the keys (one key block of 512 columns, the masked ones included),
// twice the work the mask leaves. Here each block of 64 queries multiplies exactly the keys its
// rows may see, from the block's first visible key to its last row; a block's scores fit in
// cache, so they are materialised whole (no online rescaling) and the products are large
// enough for MKL's sgemm (blas.h), called one block at a time
// inside at::parallel_for.
//
// Forward, per (batch, head, query block): S = q k^T / sqrt(D); P = exp(S - rowmax);
// out = P v / rowsum; lse = rowmax + log(rowsum) is kept for the backward.
// Backward, per (batch, key/value head), over its query heads and blocks (the task owns the
// head's dk and dv, which every block adds to): P = exp(S - lse) recomputed; dv += P^T dout;
// dP = dout v^T; dS = P * (dP - rowsum(dout * out)); dq = dS k / sqrt(D); dk += dS^T q / sqrt(D).
//
// Layout: tensors are (batch, heads, seq, head_dim) with any strides whose last is 1 (the usual
// transposed view of (batch, seq, heads, head_dim) projections); out is returned in that
// transposed layout, so merging the heads afterwards is free. first_key is int64 (batch, seq),
// non-decreasing along the sequence, with 0 <= first_key[i] <= i.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "avx512_math.h"
#include "blas.h"

namespace {

constexpr int64_t kBlock = 64;  // queries per block (measured fastest of 32, 64 and 128)

using herd::exp_sum;
using herd::gemm;
using herd::lanes;
using herd::row_max;

// row[j] <- exp(row[j] - shift) for j in [begin, end), 0 for the other j in [0, n); returns the sum.
float exp_row(float* row, int64_t n, int64_t begin, int64_t end, float shift) {
  std::fill(row, row + begin, 0.f);
  std::fill(row + end, row + n, 0.f);
  return exp_sum(row, begin, end, shift, true);
}

// One head's rows: element (i, d) at data[i * stride + d].
struct Rows {
  float* data;
  int64_t stride;
  float* row(int64_t i) const { return data + i * stride; }
};

Rows head(const at::Tensor& t, int64_t b, int64_t h) {
  return {t.data_ptr<float>() + b * t.stride(0) + h * t.stride(1), t.stride(2)};
}

// The keys query block [m, m + rows) may see: [first, m + rows), and row r's own [lo(r), m + r + 1).
struct Span {
  const int64_t* first_key;  // this batch row's first_key, or null (every earlier key)
  int64_t m;
  int64_t lo(int64_t r) const { return first_key ? first_key[m + r] : 0; }
  int64_t first() const { return lo(0); }
};

void check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const std::optional<at::Tensor>& first_key) {
  for (const auto* t : {&q, &k, &v}) {
    TORCH_CHECK(t->dim() == 4 && t->scalar_type() == at::kFloat && t->device().is_cpu(),
                "causal_attention: q, k and v must be 4-D float32 CPU tensors (batch, heads, seq, head_dim)");
  }
  TORCH_CHECK(k.sizes() == v.sizes() && k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3),
              "causal_attention: k and v must be (batch, kv_heads, seq, head_dim) like q's ", q.sizes(), "; got ",
              k.sizes(), " and ", v.sizes());
  TORCH_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, "causal_attention: ", q.size(1),
              " query heads are not a multiple of ", k.size(1), " key/value heads");
  if (!first_key) return;
  const at::Tensor& f = *first_key;
  TORCH_CHECK(f.scalar_type() == at::kLong && f.dim() == 2 && f.size(0) == q.size(0) && f.size(1) == q.size(2) &&
                  f.is_contiguous(),
              "causal_attention: first_key must be contiguous int64 (batch, seq)");
  const int64_t* p = f.data_ptr<int64_t>();
  for (int64_t b = 0; b < f.size(0); ++b) {
    for (int64_t i = 0; i < f.size(1); ++i) {
      const int64_t x = p[b * f.size(1) + i];
      TORCH_CHECK(x >= 0 && x <= i && (i == 0 || x >= p[b * f.size(1) + i - 1]), "causal_attention: first_key[",
                  b, ", ", i, "] = ", x, " is not a non-decreasing key index at or before its query");
    }
  }
}

at::Tensor last_dim_contiguous(const at::Tensor& t) { return t.stride(3) == 1 ? t : t.contiguous(); }

std::tuple<at::Tensor, at::Tensor> causal_attention(const at::Tensor& q_, const at::Tensor& k_,
                                                    const at::Tensor& v_, const std::optional<at::Tensor>& first_key) {
  check_inputs(q_, k_, v_, first_key);
  const at::Tensor q = last_dim_contiguous(q_), k = last_dim_contiguous(k_), v = last_dim_contiguous(v_);
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3), rep = H / k.size(1);
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  at::Tensor out = at::empty({B, S, H, D}, q.options()).transpose(1, 2);
  at::Tensor lse = at::empty({B, H, S}, q.options());
  const int64_t* fk = first_key ? first_key->data_ptr<int64_t>() : nullptr;
  const int64_t blocks = (S + kBlock - 1) / kBlock;
  at::parallel_for(0, B * H * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(kBlock * S);
    float inv_sum[kBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t m = task % blocks * kBlock, h = task / blocks % H, b = task / blocks / H;
      const Span span{fk ? fk + b * S : nullptr, m};
      const int64_t rows = std::min(kBlock, S - m), k0 = span.first(), keys = m + rows - k0;
      const Rows Q = head(q, b, h), K = head(k, b, h / rep), V = head(v, b, h / rep), O = head(out, b, h);
      float* lse_row = lse.data_ptr<float>() + (b * H + h) * S + m;
      gemm(false, true, rows, keys, D, scale, Q.row(m), Q.stride, K.row(k0), K.stride, 0.f, scores.data(), keys);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = scores.data() + r * keys;
        const int64_t lo = span.lo(r) - k0, hi = m + r + 1 - k0;
        const float mx = row_max(row, lo, hi);
        const float sum = exp_row(row, keys, lo, hi, mx);
        inv_sum[r] = 1.f / sum;
        lse_row[r] = mx + std::log(sum);
      }
      gemm(false, false, rows, D, keys, 1.f, scores.data(), keys, V.row(k0), V.stride, 0.f, O.row(m), O.stride);
      for (int64_t r = 0; r < rows; ++r) {
        float* o = O.row(m + r);
        for (int64_t d = 0; d < D; ++d) o[d] *= inv_sum[r];
      }
    }
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> causal_attention_backward(
    const at::Tensor& grad_out_, const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_,
    const at::Tensor& out_, const at::Tensor& lse, const std::optional<at::Tensor>& first_key) {
  check_inputs(q_, k_, v_, first_key);
  TORCH_CHECK(grad_out_.sizes() == q_.sizes() && out_.sizes() == q_.sizes(),
              "causal_attention_backward: grad_out and out must have q's shape");
  const at::Tensor q = last_dim_contiguous(q_), k = last_dim_contiguous(k_), v = last_dim_contiguous(v_);
  const at::Tensor dout = last_dim_contiguous(grad_out_), out = last_dim_contiguous(out_);
  const at::Tensor lse_c = lse.contiguous();
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3), KV = k.size(1), rep = H / KV;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  at::Tensor dq = at::empty_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
  const int64_t* fk = first_key ? first_key->data_ptr<int64_t>() : nullptr;
  at::parallel_for(0, B * KV, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(kBlock * S), dp(kBlock * S);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t g = task % KV, b = task / KV;
      const Rows K = head(k, b, g), V = head(v, b, g), dK = head(dk, b, g), dV = head(dv, b, g);
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        const Rows Q = head(q, b, h), O = head(out, b, h), dO = head(dout, b, h), dQ = head(dq, b, h);
        const float* lse_head = lse_c.data_ptr<float>() + (b * H + h) * S;
        for (int64_t m = 0; m < S; m += kBlock) {
          const Span span{fk ? fk + b * S : nullptr, m};
          const int64_t rows = std::min(kBlock, S - m), k0 = span.first(), keys = m + rows - k0;
          gemm(false, true, rows, keys, D, scale, Q.row(m), Q.stride, K.row(k0), K.stride, 0.f, p.data(), keys);
          gemm(false, true, rows, keys, D, 1.f, dO.row(m), dO.stride, V.row(k0), V.stride, 0.f, dp.data(), keys);
          for (int64_t r = 0; r < rows; ++r) {
            float* p_row = p.data() + r * keys;
            float* dp_row = dp.data() + r * keys;
            exp_row(p_row, keys, span.lo(r) - k0, m + r + 1 - k0, lse_head[m + r]);
            float dot = 0.f;  // rowsum(dout * out): the softmax's Jacobian term
            for (int64_t d = 0; d < D; ++d) dot += dO.row(m + r)[d] * O.row(m + r)[d];
            const __m512 dot16 = _mm512_set1_ps(dot);
            for (int64_t j = 0; j < keys; j += 16) {
              const __mmask16 mk = lanes(keys - j);
              const __m512 pj = _mm512_maskz_loadu_ps(mk, p_row + j);
              const __m512 dpj = _mm512_maskz_loadu_ps(mk, dp_row + j);
              _mm512_mask_storeu_ps(dp_row + j, mk, _mm512_mul_ps(pj, _mm512_sub_ps(dpj, dot16)));
            }
          }
          gemm(true, false, keys, D, rows, 1.f, p.data(), keys, dO.row(m), dO.stride, 1.f, dV.row(k0), dV.stride);
          gemm(false, false, rows, D, keys, scale, dp.data(), keys, K.row(k0), K.stride, 0.f, dQ.row(m), dQ.stride);
          gemm(true, false, keys, D, rows, scale, dp.data(), keys, Q.row(m), Q.stride, 1.f, dK.row(k0), dK.stride);
        }
      }
    }
  });
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(herd, m) {
  m.def("causal_attention(Tensor q, Tensor k, Tensor v, Tensor? first_key) -> (Tensor, Tensor)");
  m.def(
      "causal_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "Tensor? first_key) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(herd, CPU, m) {
  m.impl("causal_attention", &causal_attention);
  m.impl("causal_attention_backward", &causal_attention_backward);
}
