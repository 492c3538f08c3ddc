// herd's weight-only products for decoding on x86 CPUs with AVX512-VNNI: herd::int4_linear and
// herd::int8_linear, y[m, n] = sum_k x[m, k] * W[n, k] for a few activation rows x.
//
// The method of llama.cpp's Q4_1 x Q8_1 and Q8_0 x Q8_0 dot products: each activation row is
// rounded to int8 per group of inputs (d = max|x| / 127), and VPDPBUSD multiplies 64 unsigned
// weight bytes by four activations broadcast to every 32-bit lane, summing into each lane.
//
// Layout (written by herd.infer.quantize): output rows come in tiles of 16, one per lane. For
// each tile and 4-byte step, the four bytes of each of the tile's 16 rows lie side by side, so
// one 64-byte load feeds all 16 rows. Rows are padded to whole tiles with zeros.
//
// int4: W[n, k] = q * scale[g, n] + min[g, n], g = k / group_size, codes q in [0, 15], scales
//   and minimums float16 (groups of 32 are llama.cpp's Q4_1 format, 5 bits per weight). codes is
//   (tiles, groups, group_size / 8, 16, 4) bytes; byte b of a group holds input b in its low
//   nibble and input b + group_size / 2 in its high nibble, so step p pairs with inputs
//   4p .. 4p + 3 (low) and group_size / 2 + 4p .. + 3 (high). scales and mins are (groups, padded
//   rows), a tile's 16 values contiguous. The activations' groups are the weights' groups. After
//   a group the lanes are scaled by scale * d and min * (the group's float activation sum) is
//   added. The integer products see the codes q, whose mean (about 7.5) would carry the
//   activations' rounding error into every output; adding 8 * scale * (float sum - rounded sum)
//   gives the result of the centred codes q - 8 instead, whose rounding error is about three
//   times smaller (the product of llama.cpp's centred Q4_0 format).
// int8: W[n, k] = q * scale[n], q in [-127, 127] stored as q + 128 (unsigned, as VPDPBUSD
//   wants), codes (tiles, in / 4, 16, 4) bytes, scales (padded rows) float32. The activations'
//   groups have 32 inputs (Q8_0's blocks); 128 * (rounded sum) per group removes the + 128.
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
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kTile = 16;       // output rows per tile: the 32-bit lanes of an AVX512 register
constexpr int64_t kInt8Group = 32;  // inputs per activation scale in the int8 product

// Activation rows rounded to int8 per group, with each group's scale and sums.
struct Activations {
  std::vector<int8_t> rounded;     // (rows, in): round(x / d) in the inputs' order
  std::vector<float> scale;        // (rows, groups): d
  std::vector<float> sum;          // (rows, groups): sum of the group's float activations
  std::vector<float> rounded_sum;  // (rows, groups): sum of the group's rounded activations

  Activations(const float* x, int64_t rows, int64_t in_features, int64_t group_size)
      : rounded(rows * in_features), scale(rows * in_features / group_size), sum(scale.size()),
        rounded_sum(scale.size()) {
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
        const float inverse = amax > 0.f ? 127.f / amax : 0.f;
        int32_t rounded_total = 0;
        for (int64_t k = 0; k < group_size; ++k) {
          q[k] = static_cast<int8_t>(std::nearbyint(v[k] * inverse));
          rounded_total += q[k];
        }
        const int64_t i = m * groups + g;
        scale[i] = amax / 127.f;
        sum[i] = total;
        rounded_sum[i] = static_cast<float>(rounded_total);
      }
    }
  }
};

// Four int8 activations as one 32-bit word, to be broadcast to every lane.
inline __m512i broadcast_word(const int8_t* from) {
  int32_t w;
  std::memcpy(&w, from, sizeof w);
  return _mm512_set1_epi32(w);
}

inline __m512 load_halves(const at::Half* from) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(from)));
}

// Store a tile's 16 outputs of one activation row (fewer in a last, partial tile).
inline void store_tile(float* y, int64_t out_features, int64_t tile, __m512 values) {
  const int64_t first = tile * kTile, valid = std::min(kTile, out_features - first);
  _mm512_mask_storeu_ps(y + first, static_cast<__mmask16>((1u << valid) - 1), values);
}

// Calls f(block, m0) for activation rows in blocks of 4, then the rest, with the block size a
// compile-time constant so that each row's accumulators stay in registers.
template <typename F>
void row_blocks(int64_t rows, const F& f) {
  int64_t m = 0;
  for (; m + 4 <= rows; m += 4) f(std::integral_constant<int, 4>{}, m);
  switch (rows - m) {
    case 3: f(std::integral_constant<int, 3>{}, m); break;
    case 2: f(std::integral_constant<int, 2>{}, m); break;
    case 1: f(std::integral_constant<int, 1>{}, m); break;
    default: break;
  }
}

// The loop both formats share, over tiles [begin, end): for each group, its 64-byte steps of
// codes go through step(dot, codes, g, p) into integer dot products per activation row, which
// finish(acc, dot, t, g) folds into float accumulators; store(acc, t) writes the tile.
template <int Rows, typename Step, typename Finish, typename Store>
void tile_loop(int64_t begin, int64_t end, int64_t groups, int64_t steps, const uint8_t* codes, const Step& step,
               const Finish& finish, const Store& store) {
  for (int64_t t = begin; t < end; ++t) {
    __m512 acc[Rows];
    for (int r = 0; r < Rows; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* w = codes + (t * groups + g) * steps * 64;
      __m512i dot[Rows];
      for (int r = 0; r < Rows; ++r) dot[r] = _mm512_setzero_si512();
      for (int64_t p = 0; p < steps; ++p) step(dot, _mm512_loadu_si512(w + p * 64), g, p);
      finish(acc, dot, t, g);
    }
    store(acc, t);
  }
}

template <int Rows>
void int4_tiles(const Activations& act, int64_t m0, const uint8_t* codes, const at::Half* scales,
                const at::Half* mins, float* y, int64_t in_features, int64_t out_features, int64_t group_size,
                int64_t begin, int64_t end) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const int64_t groups = in_features / group_size, half = group_size / 2;
  const int64_t padded_rows = (out_features + kTile - 1) / kTile * kTile;
  const auto step = [&](__m512i(&dot)[Rows], __m512i packed, int64_t g, int64_t p) {
    const __m512i lo = _mm512_and_si512(packed, nibble);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble);
    for (int r = 0; r < Rows; ++r) {
      const int8_t* q = act.rounded.data() + (m0 + r) * in_features + g * group_size + 4 * p;
      dot[r] = _mm512_dpbusd_epi32(dot[r], lo, broadcast_word(q));
      dot[r] = _mm512_dpbusd_epi32(dot[r], hi, broadcast_word(q + half));
    }
  };
  const auto finish = [&](__m512(&acc)[Rows], const __m512i(&dot)[Rows], int64_t t, int64_t g) {
    const __m512 s = load_halves(scales + g * padded_rows + t * kTile);
    const __m512 mn = load_halves(mins + g * padded_rows + t * kTile);
    for (int r = 0; r < Rows; ++r) {
      const int64_t i = (m0 + r) * groups + g;
      const float d = act.scale[i], centring = 8.f * (act.sum[i] - d * act.rounded_sum[i]);
      const __m512 scaled = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r]), _mm512_set1_ps(d), _mm512_set1_ps(centring));
      acc[r] = _mm512_fmadd_ps(s, scaled, acc[r]);
      acc[r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(act.sum[i]), acc[r]);
    }
  };
  const auto store = [&](const __m512(&acc)[Rows], int64_t t) {
    for (int r = 0; r < Rows; ++r) store_tile(y + (m0 + r) * out_features, out_features, t, acc[r]);
  };
  tile_loop<Rows>(begin, end, groups, group_size / 8, codes, step, finish, store);
}

template <int Rows>
void int8_tiles(const Activations& act, int64_t m0, const uint8_t* codes, const float* scales, float* y,
                int64_t in_features, int64_t out_features, int64_t begin, int64_t end) {
  const int64_t groups = in_features / kInt8Group;
  const auto step = [&](__m512i(&dot)[Rows], __m512i packed, int64_t g, int64_t p) {
    for (int r = 0; r < Rows; ++r) {
      const int8_t* q = act.rounded.data() + (m0 + r) * in_features + g * kInt8Group + 4 * p;
      dot[r] = _mm512_dpbusd_epi32(dot[r], packed, broadcast_word(q));
    }
  };
  const auto finish = [&](__m512(&acc)[Rows], const __m512i(&dot)[Rows], int64_t, int64_t g) {
    for (int r = 0; r < Rows; ++r) {
      const int64_t i = (m0 + r) * groups + g;
      const __m512 unbiased = _mm512_sub_ps(_mm512_cvtepi32_ps(dot[r]), _mm512_set1_ps(128.f * act.rounded_sum[i]));
      acc[r] = _mm512_fmadd_ps(unbiased, _mm512_set1_ps(act.scale[i]), acc[r]);
    }
  };
  const auto store = [&](const __m512(&acc)[Rows], int64_t t) {
    const __m512 s = _mm512_loadu_ps(scales + t * kTile);
    for (int r = 0; r < Rows; ++r) store_tile(y + (m0 + r) * out_features, out_features, t, _mm512_mul_ps(acc[r], s));
  };
  tile_loop<Rows>(begin, end, groups, kInt8Group / 4, codes, step, finish, store);
}

void check_input(const char* op, const at::Tensor& x, int64_t group_size) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), op,
              ": x must be a contiguous (rows, in) float32 tensor");
  TORCH_CHECK(group_size >= 8 && group_size % 8 == 0 && x.size(1) % group_size == 0, op, ": in_features ",
              x.size(1), " is not a multiple of group_size ", group_size);
}

void check_codes(const char* op, const at::Tensor& codes, int64_t bytes) {
  TORCH_CHECK(codes.scalar_type() == at::kByte && codes.is_contiguous() && codes.numel() == bytes, op,
              ": codes must be contiguous uint8 holding ", bytes, " bytes (rows padded to 16)");
}

// Tiles per thread: below ~64k weights a thread's start-up costs more than its share saves.
int64_t grain(int64_t in_features) { return std::max<int64_t>(1, 65536 / (kTile * in_features)); }

at::Tensor int4_linear(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales,
                       const at::Tensor& mins, int64_t out_features, int64_t group_size) {
  check_input("herd::int4_linear", x, group_size);
  const int64_t rows = x.size(0), in_features = x.size(1), groups = in_features / group_size;
  const int64_t tiles = (out_features + kTile - 1) / kTile;
  check_codes("herd::int4_linear", codes, tiles * kTile * in_features / 2);
  for (const at::Tensor* t : {&scales, &mins}) {  // float16, or its bits as int16 (as Int4Linear keeps them)
    TORCH_CHECK((t->scalar_type() == at::kHalf || t->scalar_type() == at::kShort) && t->is_contiguous() &&
                    t->numel() == groups * tiles * kTile,
                "herd::int4_linear: scales and mins must be contiguous float16 (in / group_size, rows padded to 16)");
  }
  const Activations act(x.data_ptr<float>(), rows, in_features, group_size);
  at::Tensor y = at::empty({rows, out_features}, x.options());
  const uint8_t* w = codes.data_ptr<uint8_t>();
  const auto* s = static_cast<const at::Half*>(scales.const_data_ptr());
  const auto* mn = static_cast<const at::Half*>(mins.const_data_ptr());
  float* out = y.data_ptr<float>();
  at::parallel_for(0, tiles, grain(in_features), [&](int64_t begin, int64_t end) {
    row_blocks(rows, [&](auto block, int64_t m) {
      int4_tiles<decltype(block)::value>(act, m, w, s, mn, out, in_features, out_features, group_size, begin, end);
    });
  });
  return y;
}

at::Tensor int8_linear(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales,
                       int64_t out_features) {
  check_input("herd::int8_linear", x, kInt8Group);
  const int64_t rows = x.size(0), in_features = x.size(1), tiles = (out_features + kTile - 1) / kTile;
  check_codes("herd::int8_linear", codes, tiles * kTile * in_features);
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.is_contiguous() && scales.numel() == tiles * kTile,
              "herd::int8_linear: scales must be contiguous float32 (rows padded to 16)");
  const Activations act(x.data_ptr<float>(), rows, in_features, kInt8Group);
  at::Tensor y = at::empty({rows, out_features}, x.options());
  const uint8_t* w = codes.data_ptr<uint8_t>();
  const float* s = scales.data_ptr<float>();
  float* out = y.data_ptr<float>();
  at::parallel_for(0, tiles, grain(in_features), [&](int64_t begin, int64_t end) {
    row_blocks(rows, [&](auto block, int64_t m) {
      int8_tiles<decltype(block)::value>(act, m, w, s, out, in_features, out_features, begin, end);
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(herd, m) {
  m.def("int4_linear(Tensor x, Tensor codes, Tensor scales, Tensor mins, int out_features, int group_size) -> Tensor");
  m.def("int8_linear(Tensor x, Tensor codes, Tensor scales, int out_features) -> Tensor");
}

TORCH_LIBRARY_IMPL(herd, CPU, m) {
  m.impl("int4_linear", &int4_linear);
  m.impl("int8_linear", &int8_linear);
}
