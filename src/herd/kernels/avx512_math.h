// Vector helpers shared by herd's AVX512F kernels in this directory (attention.cpp,
// cross_entropy.cpp): a 16-lane exp, the mask of the first n lanes, and the two passes of a
// softmax over a row (its maximum; its exponentials and their sum).

#pragma once

#include <immintrin.h>

#include <cstdint>

namespace herd {

// exp(x) = 2^n * 2^f, n = round(x log2 e), |f| <= 1/2; 2^f = e^(f ln 2) by its Taylor series to
// degree 6 (relative error < 2e-7). Inputs below -104 give 0 (exp(-104) is under float's range).
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_mul_ps(_mm512_sub_ps(t, n), _mm512_set1_ps(0.693147180559945309f));
  __m512 p = _mm512_set1_ps(1.f / 720);
  for (const float c : {1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}

// The first min(n, 16) lanes.
inline __mmask16 lanes(int64_t n) { return n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1); }

// The largest of row[begin, end).
inline float row_max(const float* row, int64_t begin, int64_t end) {
  __m512 acc = _mm512_set1_ps(-INFINITY);
  for (int64_t j = begin; j < end; j += 16) {
    const __mmask16 m = lanes(end - j);
    acc = _mm512_mask_max_ps(acc, m, acc, _mm512_maskz_loadu_ps(m, row + j));
  }
  return _mm512_reduce_max_ps(acc);
}

// The sum of exp(row[j] - shift) over j in [begin, end); with store, row[j] becomes exp(row[j] - shift).
inline float exp_sum(float* row, int64_t begin, int64_t end, float shift, bool store) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = begin; j < end; j += 16) {
    const __mmask16 m = lanes(end - j);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), s));
    if (store) _mm512_mask_storeu_ps(row + j, m, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace herd
