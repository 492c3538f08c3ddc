// Row-major matrix products through the BLAS that libtorch_cpu exports (MKL's, in PyTorch's x86
// wheels), for herd's kernels in this directory (attention.cpp, cross_entropy.cpp).

#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
// MKL's packed products: one operand converted once to the internal layout, then reused.
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest);
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc);
}

namespace herd {

// CBLAS enumerations (MKL's values).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;

// Row-major C (m x n) = alpha * op(A) op(B) + beta * C, op(A) m x k: column-major BLAS computing C^T.
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const char op_b = trans_b ? 'T' : 'N', op_a = trans_a ? 'T' : 'N';
  const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  const int LA = static_cast<int>(ldb), LB = static_cast<int>(lda), LC = static_cast<int>(ldc);
  sgemm_(&op_b, &op_a, &M, &N, &K, &alpha, b, &LA, a, &LB, &beta, c, &LC);
}

}  // namespace herd
