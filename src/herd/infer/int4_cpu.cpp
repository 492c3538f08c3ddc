// herd::int4_linear: the int4 weight-only product of decoding, for x86 CPUs with AVX512-VNNI.
//
// y[m, n] = sum_k x[m, k] * W[n, k], with W[n, k] = q[n, k] * scale[g, n] + min[g, n] for the
// group g = k / group_size, 4-bit codes q in [0, 15] and float16 scales and minimums (with
// groups of 32, llama.cpp's Q4_1 format, 5 bits per weight).
//
// Layout (written by herd.infer.quantize.Int4Linear): output rows come in tiles of 16, one per
// 32-bit lane of an AVX512 register. codes is (tiles, groups, group_size / 8, 16, 4) bytes: for
// each tile, group and 4-byte step p, the four bytes of each of the tile's 16 rows. Byte b of a
// group holds input b in its low nibble and input b + group_size / 2 in its high nibble, so
// step p pairs with inputs 4p .. 4p + 3 (low) and group_size / 2 + 4p .. + 3 (high). scales and
// mins are (groups, rows padded to 16), so a tile's 16 values for a group are contiguous.
//
// The method of llama.cpp's Q4_1 x Q8_1 dot product: each activation row is rounded to int8
// per group (d = max|x| / 127), and VPDPBUSD multiplies the 64 unsigned codes of a register by
// the four activations broadcast to every lane, summing into each row's lane. After a group,
// the lanes are scaled by scale * d in float and the min term, min * (sum of the group's float
// activations), is added. The integer products see the codes q, whose mean (about 7.5) would
// carry the activations' rounding error into every output; adding 8 * scale * (float sum -
// rounded sum) per group gives the result of the centred codes q - 8 instead, whose rounding
// error is about three times smaller (the product of llama.cpp's centred Q4_0 format).
// Each register of codes is loaded and unpacked once and used by every activation row.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Half.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kTile = 16;  // output rows per tile: the 32-bit lanes of an AVX512 register

// Activation rows rounded to int8 per group, with what each group needs after its products.
struct Activations {
  std::vector<int8_t> rounded;  // (rows, in): round(x / d) in the inputs' order
  std::vector<float> scale;     // (rows, groups): d
  std::vector<float> sum;       // (rows, groups): sum of the group's float activations
  std::vector<float> centring;  // (rows, groups): 8 * (float sum - d * rounded sum), see the top

  Activations(const float* x, int64_t rows, int64_t in_features, int64_t group_size)
      : rounded(rows * in_features), scale(rows * in_features / group_size), sum(scale.size()),
        centring(scale.size()) {
    const int64_t groups = in_features / group_size;
    for (int64_t m = 0; m < rows; ++m) {
      for (int64_t g = 0; g < groups; ++g) {
        const float* v = x + m * in_features + g * group_size;
        int8_t* q = rounded.data() + m * in_features + g * group_size;
        float amax = 0.f, total = 0.f;
        for (int64_t k = 0; k < group_size; ++k) {
          amax = std::max(amax, std::fabs(v[k]));
          total += v[k];
        }
        const float d = amax / 127.f, inverse = amax > 0.f ? 127.f / amax : 0.f;
        int32_t rounded_total = 0;
        for (int64_t k = 0; k < group_size; ++k) {
          q[k] = static_cast<int8_t>(std::nearbyint(v[k] * inverse));
          rounded_total += q[k];
        }
        const int64_t i = m * groups + g;
        scale[i] = d;
        sum[i] = total;
        centring[i] = 8.f * (total - d * static_cast<float>(rounded_total));
      }
    }
  }
};

// Four int8 activations as one 32-bit word, to be broadcast to every lane.
inline int32_t word(const int8_t* from) {
  int32_t w;
  std::memcpy(&w, from, sizeof w);
  return w;
}

// Tiles [begin, end) for activation rows [m0, m0 + Rows).
template <int Rows>
void tiles(const Activations& act, int64_t m0, const uint8_t* codes, const at::Half* scales, const at::Half* mins,
           float* y, int64_t in_features, int64_t out_features, int64_t group_size, int64_t begin, int64_t end) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const int64_t groups = in_features / group_size, steps = group_size / 8, half = group_size / 2;
  const int64_t padded_rows = (out_features + kTile - 1) / kTile * kTile;
  for (int64_t t = begin; t < end; ++t) {
    __m512 acc[Rows];
    for (int r = 0; r < Rows; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* w = codes + ((t * groups + g) * steps) * 64;
      __m512i dot[Rows];
      for (int r = 0; r < Rows; ++r) dot[r] = _mm512_setzero_si512();
      for (int64_t p = 0; p < steps; ++p) {
        const __m512i packed = _mm512_loadu_si512(w + p * 64);
        const __m512i lo = _mm512_and_si512(packed, nibble);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble);
        for (int r = 0; r < Rows; ++r) {
          const int8_t* q = act.rounded.data() + (m0 + r) * in_features + g * group_size + 4 * p;
          dot[r] = _mm512_dpbusd_epi32(dot[r], lo, _mm512_set1_epi32(word(q)));
          dot[r] = _mm512_dpbusd_epi32(dot[r], hi, _mm512_set1_epi32(word(q + half)));
        }
      }
      const int64_t at = g * padded_rows + t * kTile;
      const __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + at)));
      const __m512 mn = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mins + at)));
      for (int r = 0; r < Rows; ++r) {
        const int64_t i = (m0 + r) * groups + g;
        const __m512 scaled = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r]), _mm512_set1_ps(act.scale[i]),
                                              _mm512_set1_ps(act.centring[i]));
        acc[r] = _mm512_fmadd_ps(s, scaled, acc[r]);
        acc[r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(act.sum[i]), acc[r]);
      }
    }
    const int64_t first = t * kTile, valid = std::min(kTile, out_features - first);
    const __mmask16 store = static_cast<__mmask16>(valid == kTile ? 0xFFFF : (1u << valid) - 1);
    for (int r = 0; r < Rows; ++r) _mm512_mask_storeu_ps(y + (m0 + r) * out_features + first, store, acc[r]);
  }
}

at::Tensor int4_linear(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales,
                       const at::Tensor& mins, int64_t out_features, int64_t group_size) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "herd::int4_linear: x must be a contiguous (rows, in) float32 tensor");
  const int64_t rows = x.size(0), in_features = x.size(1);
  TORCH_CHECK(group_size >= 8 && group_size % 8 == 0 && in_features % group_size == 0,
              "herd::int4_linear: in_features ", in_features, " is not a multiple of group_size ", group_size);
  const int64_t groups = in_features / group_size, n_tiles = (out_features + kTile - 1) / kTile;
  TORCH_CHECK(codes.scalar_type() == at::kByte && codes.is_contiguous() &&
                  codes.numel() == n_tiles * kTile * in_features / 2,
              "herd::int4_linear: codes must be contiguous uint8 holding (out padded to 16, in / 2) bytes");
  for (const at::Tensor* t : {&scales, &mins}) {  // float16, or its bits as int16 (as Int4Linear keeps them)
    TORCH_CHECK((t->scalar_type() == at::kHalf || t->scalar_type() == at::kShort) && t->is_contiguous() &&
                    t->numel() == groups * n_tiles * kTile,
                "herd::int4_linear: scales and mins must be contiguous float16 (in / group_size, out padded to 16)");
  }
  const Activations act(x.data_ptr<float>(), rows, in_features, group_size);
  at::Tensor y = at::empty({rows, out_features}, x.options());
  const uint8_t* w = codes.data_ptr<uint8_t>();
  const auto* s = static_cast<const at::Half*>(scales.const_data_ptr());
  const auto* mn = static_cast<const at::Half*>(mins.const_data_ptr());
  float* out = y.data_ptr<float>();
  // Below ~64k weights per thread the threads' start-up costs more than the work saves.
  const int64_t grain = std::max<int64_t>(1, 65536 / (kTile * in_features));
  at::parallel_for(0, n_tiles, grain, [&](int64_t begin, int64_t end) {
    int64_t m = 0;
    for (; m + 4 <= rows; m += 4) tiles<4>(act, m, w, s, mn, out, in_features, out_features, group_size, begin, end);
    switch (rows - m) {
      case 3: tiles<3>(act, m, w, s, mn, out, in_features, out_features, group_size, begin, end); break;
      case 2: tiles<2>(act, m, w, s, mn, out, in_features, out_features, group_size, begin, end); break;
      case 1: tiles<1>(act, m, w, s, mn, out, in_features, out_features, group_size, begin, end); break;
      default: break;
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY(herd, m) {
  m.def("int4_linear(Tensor x, Tensor codes, Tensor scales, Tensor mins, int out_features, int group_size) -> Tensor");
}

TORCH_LIBRARY_IMPL(herd, CPU, m) { m.impl("int4_linear", &int4_linear); }
