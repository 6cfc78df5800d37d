// Resampling, crops, RandomResizedCrop, normalisation, RandomErasing and the ImageNet pipelines (see
// transforms.h for the semantics).
//
// Resampling is PIL's Resample.c algorithm re-derived: for each output pixel, the taps of the filter
// (support 1 bilinear / 2 bicubic, times the reduction factor when downsampling) are evaluated in double
// at the source pixel centres, normalised to sum 1 and rounded to 22-bit fixed point; each pass
// accumulates uint8 x int32 products in int32 with a 0.5 rounding bias, shifts and clamps. The tap
// tables are computed once per (size, box) and pass; the horizontal pass runs over the source rows the
// vertical pass needs only, the vertical pass accumulates whole rows at once (vectorised by the
// compiler). CMake compiles this file without FMA contraction so the double coefficients, and hence
// the rounded taps, are those of PIL.
#include "datasets/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace unirep {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL's PRECISION_BITS for 8-bit images

double filter_support(Interpolation interp) {
  switch (interp) {
    case Interpolation::Bilinear: return 1.0;
    case Interpolation::Bicubic: return 2.0;
    case Interpolation::Nearest: return 0.5;
  }
  return 1.0;
}

inline double filter_value(Interpolation interp, double x) {
  if (x < 0.0) x = -x;
  if (interp == Interpolation::Bilinear) return x < 1.0 ? 1.0 - x : 0.0;
  // Bicubic, a = -0.5 (Keys).
  constexpr double a = -0.5;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Taps of one resampling pass: output i reads `count[i]` source samples from `start[i]`.
struct Taps {
  int ksize = 0;
  std::vector<int32_t> start, count, coeff;  // coeff: out_size x ksize, fixed point
};

Taps precompute_taps(int64_t in_size, double in0, double in1, int64_t out_size, Interpolation interp) {
  Taps t;
  const double scale = (in1 - in0) / double(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support(interp) * filterscale;
  t.ksize = int(std::ceil(support)) * 2 + 1;
  t.start.resize(size_t(out_size));
  t.count.resize(size_t(out_size));
  t.coeff.assign(size_t(out_size) * size_t(t.ksize), 0);
  std::vector<double> k(size_t(t.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (double(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int64_t xmin = int64_t(center - support + 0.5);  // C's (int) truncation
    if (xmin < 0) xmin = 0;
    int64_t xmax = int64_t(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = filter_value(interp, (double(x + xmin) - center + 0.5) * ss);
      k[size_t(x)] = w;
      ww += w;
    }
    int32_t* out = t.coeff.data() + xx * t.ksize;
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[size_t(x)] / ww : k[size_t(x)];
      out[x] = int32_t(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    t.start[size_t(xx)] = int32_t(xmin);
    t.count[size_t(xx)] = int32_t(std::max<int64_t>(xmax, 0));
  }
  return t;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return v < 0 ? uint8_t(0) : v > 255 ? uint8_t(255) : uint8_t(v);
}

#if defined(__AVX2__)
// dst row j (j < 8, stride dst_stride) = byte j of each of the 8 source rows (stride src_stride).
inline void transpose8x8(const uint8_t* src, int64_t src_stride, uint8_t* dst, int64_t dst_stride) {
  auto row = [&](int r) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + r * src_stride)); };
  const __m128i r01 = _mm_unpacklo_epi8(row(0), row(1)), r23 = _mm_unpacklo_epi8(row(2), row(3));
  const __m128i r45 = _mm_unpacklo_epi8(row(4), row(5)), r67 = _mm_unpacklo_epi8(row(6), row(7));
  const __m128i a = _mm_unpacklo_epi16(r01, r23), b = _mm_unpackhi_epi16(r01, r23);
  const __m128i c = _mm_unpacklo_epi16(r45, r67), d = _mm_unpackhi_epi16(r45, r67);
  const __m128i q0 = _mm_unpacklo_epi32(a, c), q1 = _mm_unpackhi_epi32(a, c);
  const __m128i q2 = _mm_unpacklo_epi32(b, d), q3 = _mm_unpackhi_epi32(b, d);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), q0);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + dst_stride), _mm_unpackhi_epi64(q0, q0));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 2 * dst_stride), q1);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 3 * dst_stride), _mm_unpackhi_epi64(q1, q1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 4 * dst_stride), q2);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 5 * dst_stride), _mm_unpackhi_epi64(q2, q2));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 6 * dst_stride), q3);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 7 * dst_stride), _mm_unpackhi_epi64(q3, q3));
}

// Eight rows at a time: the block is transposed so that the eight rows' samples of one (column, channel)
// are contiguous, then every tap is one 8-lane int32 multiply-add (the same integer arithmetic as the
// scalar loop, so the same result). Returns the number of rows done (a multiple of 8).
int64_t resample_horizontal_rgb_x8(const uint8_t* src, int64_t src_stride, int64_t in_w, int64_t rows, const Taps& t,
                                   int64_t out_w, uint8_t* dst) {
  const int64_t blocks = rows / 8;
  if (blocks == 0) return 0;
  // Only the source columns some tap reads.
  const int64_t col0 = t.start[0];
  int64_t col1 = 0;
  for (int64_t xx = 0; xx < out_w; ++xx) col1 = std::max<int64_t>(col1, int64_t(t.start[size_t(xx)]) + t.count[size_t(xx)]);
  col1 = std::min(col1, in_w);
  const int64_t len = (col1 - col0) * 3;
  std::vector<uint8_t> tr(static_cast<size_t>(std::max<int64_t>(len, 1) * 8));
  const __m256i bias = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* s = src + b * 8 * src_stride + col0 * 3;
    // Transpose 8 rows x len bytes into len x 8, 8x8 bytes at a time.
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) transpose8x8(s + i, src_stride, tr.data() + i * 8, 8);
    for (; i < len; ++i)
      for (int r = 0; r < 8; ++r) tr[size_t(i * 8 + r)] = s[r * src_stride + i];
    uint8_t* out = dst + b * 8 * out_w * 3;
    // Results go to a column-major tile (8 outputs x 3 channels, 8 rows each), transposed back to the
    // 8 output rows once full.
    alignas(16) uint8_t tile[24 * 8];
    for (int64_t xx = 0; xx < out_w; ++xx) {
      const int32_t* k = t.coeff.data() + xx * t.ksize;
      const uint8_t* p = tr.data() + (int64_t(t.start[size_t(xx)]) - col0) * 24;
      const int n = t.count[size_t(xx)];
      __m256i a0 = bias, a1 = bias, a2 = bias;
      for (int j = 0; j < n; ++j, p += 24) {
        const __m256i kj = _mm256_set1_epi32(k[j]);
        a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), kj));
        a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8))), kj));
        a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 16))), kj));
      }
      // >> 22 then saturate to 0..255 (PIL's clip8), 8 rows -> 8 bytes.
      auto pack8 = [&](__m256i v) {
        v = _mm256_srai_epi32(v, kPrecisionBits);
        const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        return _mm_packus_epi16(w16, w16);
      };
      const int64_t slot = xx & 7;
      _mm_storel_epi64(reinterpret_cast<__m128i*>(tile + slot * 24), pack8(a0));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(tile + slot * 24 + 8), pack8(a1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(tile + slot * 24 + 16), pack8(a2));
      if (slot == 7 || xx == out_w - 1) {
        const int64_t x0 = xx - slot, cols = (slot + 1) * 3;
        if (cols == 24) {
          for (int g = 0; g < 3; ++g) transpose8x8(tile + g * 64, 8, out + x0 * 3 + g * 8, out_w * 3);
        } else {
          for (int r = 0; r < 8; ++r)
            for (int64_t j = 0; j < cols; ++j) out[r * out_w * 3 + x0 * 3 + j] = tile[j * 8 + r];
        }
      }
    }
  }
  return blocks * 8;
}
#endif

// Horizontal pass over `rows` rows of a source whose rows begin at src + y * src_stride.
void resample_horizontal(const uint8_t* src, int64_t src_stride, int64_t channels, int64_t rows, const Taps& t,
                         int64_t out_w, uint8_t* dst, int64_t in_w) {
  const int64_t ks = t.ksize;
  const int32_t bias = 1 << (kPrecisionBits - 1);
  int64_t y = 0;
#if defined(__AVX2__)
  if (channels == 3) y = resample_horizontal_rgb_x8(src, src_stride, in_w, rows, t, out_w, dst);
#endif
  for (; y < rows; ++y) {
    const uint8_t* s = src + y * src_stride;
    uint8_t* o = dst + y * out_w * channels;
    if (channels == 3) {
      for (int64_t xx = 0; xx < out_w; ++xx) {
        const int32_t* k = t.coeff.data() + xx * ks;
        const uint8_t* p = s + int64_t(t.start[size_t(xx)]) * 3;
        const int n = t.count[size_t(xx)];
        int32_t s0 = bias, s1 = bias, s2 = bias;
        for (int i = 0; i < n; ++i) {
          s0 += int32_t(p[3 * i]) * k[i];
          s1 += int32_t(p[3 * i + 1]) * k[i];
          s2 += int32_t(p[3 * i + 2]) * k[i];
        }
        o[3 * xx] = clip8(s0);
        o[3 * xx + 1] = clip8(s1);
        o[3 * xx + 2] = clip8(s2);
      }
    } else {
      for (int64_t xx = 0; xx < out_w; ++xx) {
        const int32_t* k = t.coeff.data() + xx * ks;
        const uint8_t* p = s + int64_t(t.start[size_t(xx)]) * channels;
        const int n = t.count[size_t(xx)];
        for (int64_t c = 0; c < channels; ++c) {
          int32_t acc = bias;
          for (int i = 0; i < n; ++i) acc += int32_t(p[i * channels + c]) * k[i];
          o[xx * channels + c] = clip8(acc);
        }
      }
    }
  }
}

// Vertical pass: output row yy = sum of source rows start..start+count (relative to `src`).
void resample_vertical(const uint8_t* src, int64_t src_stride, int64_t row_len, const Taps& t, int64_t out_h,
                       uint8_t* dst) {
  std::vector<int32_t> acc(static_cast<size_t>(row_len));
  const int32_t bias = 1 << (kPrecisionBits - 1);
  for (int64_t yy = 0; yy < out_h; ++yy) {
    const int32_t* k = t.coeff.data() + yy * t.ksize;
    const uint8_t* base = src + int64_t(t.start[size_t(yy)]) * src_stride;
    const int n = t.count[size_t(yy)];
    int32_t* a = acc.data();
    std::fill(a, a + row_len, bias);
    for (int i = 0; i < n; ++i) {
      const uint8_t* r = base + i * src_stride;
      const int32_t ki = k[i];
      for (int64_t x = 0; x < row_len; ++x) a[x] += int32_t(r[x]) * ki;
    }
    uint8_t* o = dst + yy * row_len;
    for (int64_t x = 0; x < row_len; ++x) o[x] = clip8(a[x]);
  }
}

// PIL's nearest for resize: the source pixel under the output pixel centre of the box.
Image resample_nearest(const Image& src, int64_t r_top, int64_t r_left, int64_t r_h, int64_t r_w, int64_t out_h,
                       int64_t out_w, double x0, double y0, double x1, double y1) {
  const int64_t c = src.channels;
  Image out(out_h, out_w, c);
  const double sx = (x1 - x0) / double(out_w), sy = (y1 - y0) / double(out_h);
  std::vector<int64_t> xs(static_cast<size_t>(out_w));
  for (int64_t x = 0; x < out_w; ++x)
    xs[size_t(x)] = std::clamp<int64_t>(int64_t(std::floor(x0 + (double(x) + 0.5) * sx)), 0, r_w - 1);
  for (int64_t y = 0; y < out_h; ++y) {
    const int64_t yy = std::clamp<int64_t>(int64_t(std::floor(y0 + (double(y) + 0.5) * sy)), 0, r_h - 1);
    const uint8_t* s = src.row(r_top + yy) + r_left * c;
    uint8_t* o = out.row(y);
    for (int64_t x = 0; x < out_w; ++x) std::memcpy(o + x * c, s + xs[size_t(x)] * c, size_t(c));
  }
  return out;
}

// Resamples the box (x0, y0, x1, y1) of the region [r_top, r_top + r_h) x [r_left, r_left + r_w) of
// `src`, treating the region as the whole image (as PIL does after a crop).
Image resample_region(const Image& src, int64_t r_top, int64_t r_left, int64_t r_h, int64_t r_w, int64_t out_h,
                      int64_t out_w, Interpolation interp, double x0, double y0, double x1, double y1) {
  UNIREP_CHECK(src.channels >= 1 && src.data.size() == src.numel(), "resize: bad image ", src.shape_str());
  UNIREP_CHECK(out_h > 0 && out_w > 0, "resize: output size must be positive, got ", out_h, "x", out_w);
  UNIREP_CHECK(r_h > 0 && r_w > 0 && r_top >= 0 && r_left >= 0 && r_top + r_h <= src.height &&
                   r_left + r_w <= src.width,
               "resize: region ", r_h, "x", r_w, " at (", r_top, ", ", r_left, ") outside image ", src.shape_str());
  UNIREP_CHECK(x0 >= 0 && y0 >= 0 && x1 <= double(r_w) && y1 <= double(r_h) && x1 > x0 && y1 > y0,
               "resize: box (", x0, ", ", y0, ", ", x1, ", ", y1, ") outside the ", r_h, "x", r_w, " image");
  if (interp == Interpolation::Nearest)
    return resample_nearest(src, r_top, r_left, r_h, r_w, out_h, out_w, x0, y0, x1, y1);
  const int64_t c = src.channels;
  const bool need_h = out_w != r_w || x0 != 0.0 || x1 != double(out_w);
  const bool need_v = out_h != r_h || y0 != 0.0 || y1 != double(out_h);
  const int64_t src_stride = src.width * c;
  const uint8_t* region = src.data.data() + r_top * src_stride + r_left * c;
  Image out(out_h, out_w, c);
  if (!need_h && !need_v) {
    for (int64_t y = 0; y < out_h; ++y) std::memcpy(out.row(y), region + y * src_stride, size_t(out_w * c));
    return out;
  }
  Taps tv;
  int64_t ybox_first = 0, ybox_last = r_h;
  if (need_v) {
    tv = precompute_taps(r_h, y0, y1, out_h, interp);
    ybox_first = tv.start[0];
    ybox_last = int64_t(tv.start[size_t(out_h - 1)]) + tv.count[size_t(out_h - 1)];
  }
  if (need_h) {
    Taps th = precompute_taps(r_w, x0, x1, out_w, interp);
    if (!need_v) {
      resample_horizontal(region, src_stride, c, out_h, th, out_w, out.data.data(), r_w);
      return out;
    }
    const int64_t rows = ybox_last - ybox_first;
    std::vector<uint8_t> tmp(size_t(rows * out_w * c));
    resample_horizontal(region + ybox_first * src_stride, src_stride, c, rows, th, out_w, tmp.data(), r_w);
    for (auto& s : tv.start) s -= int32_t(ybox_first);
    resample_vertical(tmp.data(), out_w * c, out_w * c, tv, out_h, out.data.data());
    return out;
  }
  // Vertical only (out_w == r_w): the rows keep the source stride.
  resample_vertical(region, src_stride, out_w * c, tv, out_h, out.data.data());
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------ geometry

Image resize(const Image& src, int64_t out_h, int64_t out_w, Interpolation interp) {
  return resample_region(src, 0, 0, src.height, src.width, out_h, out_w, interp, 0, 0, double(src.width),
                         double(src.height));
}

Image resize_box(const Image& src, int64_t out_h, int64_t out_w, Interpolation interp, double x0, double y0,
                 double x1, double y1) {
  return resample_region(src, 0, 0, src.height, src.width, out_h, out_w, interp, x0, y0, x1, y1);
}

Image crop(const Image& src, int64_t top, int64_t left, int64_t height, int64_t width, uint8_t fill) {
  UNIREP_CHECK(height >= 0 && width >= 0, "crop: negative size ", height, "x", width);
  const int64_t c = src.channels;
  Image out(height, width, c, fill);
  const int64_t y0 = std::max<int64_t>(top, 0), y1 = std::min(top + height, src.height);
  const int64_t x0 = std::max<int64_t>(left, 0), x1 = std::min(left + width, src.width);
  if (y1 <= y0 || x1 <= x0) return out;
  for (int64_t y = y0; y < y1; ++y)
    std::memcpy(out.row(y - top) + (x0 - left) * c, src.row(y) + x0 * c, size_t((x1 - x0) * c));
  return out;
}

void hflip(Image& img) {
  const int64_t c = img.channels, w = img.width;
  for (int64_t y = 0; y < img.height; ++y) {
    uint8_t* r = img.row(y);
    if (c == 3) {
      for (int64_t a = 0, b = w - 1; a < b; ++a, --b) {
        std::swap(r[3 * a], r[3 * b]);
        std::swap(r[3 * a + 1], r[3 * b + 1]);
        std::swap(r[3 * a + 2], r[3 * b + 2]);
      }
    } else {
      for (int64_t a = 0, b = w - 1; a < b; ++a, --b)
        for (int64_t k = 0; k < c; ++k) std::swap(r[a * c + k], r[b * c + k]);
    }
  }
}

void vflip(Image& img) {
  const size_t len = size_t(img.width * img.channels);
  for (int64_t a = 0, b = img.height - 1; a < b; ++a, --b) std::swap_ranges(img.row(a), img.row(a) + len, img.row(b));
}

// ------------------------------------------------------------------------ RandomResizedCrop

CropBox random_resized_crop_box(int64_t height, int64_t width, const RandomResizedCropConfig& cfg, Rng& rng) {
  UNIREP_CHECK(height > 0 && width > 0, "random_resized_crop: empty image ", height, "x", width);
  UNIREP_CHECK(cfg.scale_min > 0 && cfg.scale_min <= cfg.scale_max && cfg.ratio_min > 0 &&
                   cfg.ratio_min <= cfg.ratio_max,
               "random_resized_crop: bad scale (", cfg.scale_min, ", ", cfg.scale_max, ") or ratio (", cfg.ratio_min,
               ", ", cfg.ratio_max, ")");
  const double area = double(height) * double(width);
  const double log_r0 = std::log(cfg.ratio_min), log_r1 = std::log(cfg.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rand_uniform(rng, cfg.scale_min, cfg.scale_max);
    const double aspect = std::exp(rand_uniform(rng, log_r0, log_r1));
    const int64_t w = int64_t(std::nearbyint(std::sqrt(target_area * aspect)));  // round half to even
    const int64_t h = int64_t(std::nearbyint(std::sqrt(target_area / aspect)));
    if (0 < w && w <= width && 0 < h && h <= height) {
      CropBox b;
      b.height = h;
      b.width = w;
      b.top = rand_int(rng, 0, height - h);
      b.left = rand_int(rng, 0, width - w);
      return b;
    }
  }
  // Fallback: the whole image, clamped to the ratio range, centred.
  CropBox b;
  const double in_ratio = double(width) / double(height);
  if (in_ratio < cfg.ratio_min) {
    b.width = width;
    b.height = int64_t(std::nearbyint(double(width) / cfg.ratio_min));
  } else if (in_ratio > cfg.ratio_max) {
    b.height = height;
    b.width = int64_t(std::nearbyint(double(height) * cfg.ratio_max));
  } else {
    b.width = width;
    b.height = height;
  }
  b.top = (height - b.height) / 2;
  b.left = (width - b.width) / 2;
  return b;
}

Image random_resized_crop(const Image& src, int64_t out_h, int64_t out_w, const RandomResizedCropConfig& cfg,
                          Rng& rng) {
  CropBox b = random_resized_crop_box(src.height, src.width, cfg, rng);
  return resample_region(src, b.top, b.left, b.height, b.width, out_h, out_w, cfg.interpolation, 0, 0,
                         double(b.width), double(b.height));
}

Image random_resized_crop_jpeg(const uint8_t* data, size_t size, int64_t out_h, int64_t out_w,
                               const RandomResizedCropConfig& cfg, Rng& rng, bool dct_scaling) {
  if (image_format(data, size) != "jpeg") {
    // ImageNet has a few PNGs (and CMYK JPEGs) named .JPEG: decode whatever it is, same draws.
    return random_resized_crop(decode_image(data, size, 3), out_h, out_w, cfg, rng);
  }
  const JpegHeader hdr = read_jpeg_header(data, size);
  const CropBox b = random_resized_crop_box(hdr.height, hdr.width, cfg, rng);
  int scale = 8;
  if (dct_scaling) {
    // Largest reduction among 1/2, 1/4, 1/8 that keeps the scaled crop at least the output size.
    for (int s : {1, 2, 4}) {
      if (double(b.width) * s / 8.0 >= double(out_w) && double(b.height) * s / 8.0 >= double(out_h)) {
        scale = s;
        break;
      }
    }
  }
  JpegDecodeOptions opt;
  opt.channels = 3;
  opt.scale_num = scale;
  if (scale == 8) {
    opt.region_x = b.left;
    opt.region_y = b.top;
    opt.region_width = b.width;
    opt.region_height = b.height;
    JpegDecoded d = decode_jpeg_region(data, size, opt);
    return resample_region(d.image, b.top - d.y0, b.left - d.x0, b.height, b.width, out_h, out_w, cfg.interpolation,
                           0, 0, double(b.width), double(b.height));
  }
  // DCT-scaled: the crop in scaled pixels is fractional; decode it with a margin of 4 scaled pixels (the
  // kernel support: filter support 2 times a reduction factor < 2) and resample the box.
  const double f = double(scale) / 8.0;
  const double bx0 = double(b.left) * f, by0 = double(b.top) * f;
  const double bx1 = double(b.left + b.width) * f, by1 = double(b.top + b.height) * f;
  const int64_t full_w = jpeg_scaled_size(hdr.width, scale), full_h = jpeg_scaled_size(hdr.height, scale);
  const int64_t rx0 = std::max<int64_t>(int64_t(std::floor(bx0)) - 4, 0);
  const int64_t ry0 = std::max<int64_t>(int64_t(std::floor(by0)) - 4, 0);
  const int64_t rx1 = std::min<int64_t>(int64_t(std::ceil(bx1)) + 4, full_w);
  const int64_t ry1 = std::min<int64_t>(int64_t(std::ceil(by1)) + 4, full_h);
  opt.region_x = rx0;
  opt.region_y = ry0;
  opt.region_width = rx1 - rx0;
  opt.region_height = ry1 - ry0;
  JpegDecoded d = decode_jpeg_region(data, size, opt);
  const double ox = double(d.x0), oy = double(d.y0);
  const double w = double(d.image.width), h = double(d.image.height);
  return resample_region(d.image, 0, 0, d.image.height, d.image.width, out_h, out_w, cfg.interpolation,
                         std::clamp(bx0 - ox, 0.0, w), std::clamp(by0 - oy, 0.0, h), std::clamp(bx1 - ox, 0.0, w),
                         std::clamp(by1 - oy, 0.0, h));
}

// ------------------------------------------------------------------------------ normalisation

namespace {

struct NormLut {
  float v[3][256];
};

void build_lut(const Normalization& n, int64_t channels, NormLut& lut) {
  for (int64_t c = 0; c < channels; ++c) {
    UNIREP_CHECK(n.std[c] != 0.f, "normalize: std of channel ", c, " is 0");
    const float m = n.mean[c], s = n.std[c];
    const float inv = float(1.0 / double(s));
    for (int i = 0; i < 256; ++i) {
      // torchvision: x.div(255) then sub_(mean).div_(std); mmcv: (x - mean) * (1 / std).
      lut.v[c][i] = n.divide_by_255 ? (float(i) / 255.f - m) / s : (float(i) - m) * inv;
    }
  }
}

void write_normalized(const Image& img, float* out, int64_t out_h, int64_t out_w, Layout layout,
                      const Normalization& norm, float pad) {
  UNIREP_CHECK(img.channels == 1 || img.channels == 3, "normalize: expected 1 or 3 channels, got ",
               img.shape_str());
  UNIREP_CHECK(out_h >= img.height && out_w >= img.width, "normalize: output ", out_h, "x", out_w,
               " smaller than the image ", img.shape_str());
  UNIREP_CHECK(out != nullptr, "normalize: null output buffer");
  NormLut lut;
  build_lut(norm, img.channels, lut);
  const int64_t c = img.channels, h = img.height, w = img.width;
  if (layout == Layout::HWC) {
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* s = img.row(y);
      float* o = out + y * out_w * c;
      if (c == 3) {
        for (int64_t x = 0; x < w; ++x) {
          o[3 * x] = lut.v[0][s[3 * x]];
          o[3 * x + 1] = lut.v[1][s[3 * x + 1]];
          o[3 * x + 2] = lut.v[2][s[3 * x + 2]];
        }
      } else {
        for (int64_t x = 0; x < w; ++x) o[x] = lut.v[0][s[x]];
      }
      std::fill(o + w * c, o + out_w * c, pad);
    }
    std::fill(out + h * out_w * c, out + out_h * out_w * c, pad);
  } else {
    for (int64_t k = 0; k < c; ++k) {
      float* plane = out + k * out_h * out_w;
      const float* l = lut.v[k];
      for (int64_t y = 0; y < h; ++y) {
        const uint8_t* s = img.row(y) + k;
        float* o = plane + y * out_w;
        for (int64_t x = 0; x < w; ++x) o[x] = l[s[x * c]];
        std::fill(o + w, o + out_w, pad);
      }
      std::fill(plane + h * out_w, plane + out_h * out_w, pad);
    }
  }
}

}  // namespace

void normalize_into(const Image& img, float* out, Layout layout, const Normalization& norm) {
  write_normalized(img, out, img.height, img.width, layout, norm, 0.f);
}

void normalize_into_padded(const Image& img, float* out, int64_t out_h, int64_t out_w, Layout layout,
                           const Normalization& norm, float pad) {
  write_normalized(img, out, out_h, out_w, layout, norm, pad);
}

// ----------------------------------------------------------------------------- RandomErasing

int random_erasing(float* img, int64_t height, int64_t width, int64_t channels, Layout layout,
                   const RandomErasingConfig& cfg, Rng& rng) {
  UNIREP_CHECK(height > 0 && width > 0 && channels > 0, "random_erasing: bad size ", channels, "x", height, "x",
               width);
  UNIREP_CHECK(cfg.min_count >= 1 && cfg.max_count >= cfg.min_count && cfg.min_area > 0 &&
                   cfg.max_area >= cfg.min_area && cfg.min_aspect > 0 && cfg.max_aspect >= cfg.min_aspect,
               "random_erasing: bad configuration");
  if (rand_uniform(rng) > cfg.probability) return 0;
  const double area = double(height) * double(width);
  const int count = cfg.min_count == cfg.max_count ? cfg.min_count : int(rand_int(rng, cfg.min_count, cfg.max_count));
  const double la0 = std::log(cfg.min_aspect), la1 = std::log(cfg.max_aspect);
  int erased = 0;
  for (int n = 0; n < count; ++n) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target_area = rand_uniform(rng, cfg.min_area, cfg.max_area) * area / count;
      const double aspect = std::exp(rand_uniform(rng, la0, la1));
      const int64_t h = int64_t(std::nearbyint(std::sqrt(target_area * aspect)));
      const int64_t w = int64_t(std::nearbyint(std::sqrt(target_area / aspect)));
      if (!(w < width && h < height)) continue;
      const int64_t top = rand_int(rng, 0, height - h), left = rand_int(rng, 0, width - w);
      std::vector<float> color(static_cast<size_t>(channels), 0.f);
      if (cfg.mode == RandomErasingConfig::Mode::Rand) fill_normal(color.data(), channels, rng);
      const bool pixel = cfg.mode == RandomErasingConfig::Mode::Pixel;
      if (layout == Layout::HWC) {
        for (int64_t y = top; y < top + h; ++y) {
          float* r = img + (y * width + left) * channels;
          if (pixel) {
            fill_normal(r, w * channels, rng);
          } else {
            for (int64_t i = 0; i < w * channels; ++i) r[i] = color[size_t(i % channels)];
          }
        }
      } else {
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t y = top; y < top + h; ++y) {
            float* r = img + (c * height + y) * width + left;
            if (pixel) {
              fill_normal(r, w, rng);
            } else {
              std::fill(r, r + w, color[size_t(c)]);
            }
          }
      }
      ++erased;
      break;
    }
  }
  return erased;
}

// ------------------------------------------------------------------------------------ pipelines

namespace {

void finish_train(Image& img, const ImageNetTrainConfig& cfg, Rng& rng, float* out) {
  if (rand_uniform(rng) < cfg.hflip_prob) hflip(img);
  if (cfg.use_rand_augment) rand_augment(img, cfg.rand_augment, rng);
  normalize_into(img, out, cfg.layout, cfg.norm);
  random_erasing(out, img.height, img.width, img.channels, cfg.layout, cfg.erasing, rng);
}

}  // namespace

Image imagenet_train_augment(const Image& image, const ImageNetTrainConfig& cfg, Rng& rng) {
  Image img = random_resized_crop(image, cfg.size, cfg.size, cfg.crop, rng);
  if (rand_uniform(rng) < cfg.hflip_prob) hflip(img);
  if (cfg.use_rand_augment) rand_augment(img, cfg.rand_augment, rng);
  return img;
}

void imagenet_train_transform(const Image& image, const ImageNetTrainConfig& cfg, Rng& rng, float* out) {
  UNIREP_CHECK(image.channels == 3, "imagenet_train_transform: expected an RGB image, got ", image.shape_str());
  Image img = random_resized_crop(image, cfg.size, cfg.size, cfg.crop, rng);
  finish_train(img, cfg, rng, out);
}

void imagenet_train_transform_jpeg(const uint8_t* data, size_t size, const ImageNetTrainConfig& cfg, Rng& rng,
                                   float* out) {
  Image img = random_resized_crop_jpeg(data, size, cfg.size, cfg.size, cfg.crop, rng, cfg.dct_scaling);
  finish_train(img, cfg, rng, out);
}

Image eval_resize_crop(const Image& image, int64_t size, double crop_pct, Interpolation interp) {
  UNIREP_CHECK(size > 0 && crop_pct > 0 && crop_pct <= 1, "eval_resize_crop: bad size ", size, " or crop_pct ",
               crop_pct);
  UNIREP_CHECK(image.height > 0 && image.width > 0, "eval_resize_crop: empty image ", image.shape_str());
  if (size >= 384) return resize(image, size, size, interp);
  const int64_t short_target = int64_t(double(size) / crop_pct);
  const int64_t h = image.height, w = image.width;
  int64_t nh, nw;
  if (w <= h) {
    nw = short_target;
    nh = int64_t(double(short_target) * double(h) / double(w));
  } else {
    nh = short_target;
    nw = int64_t(double(short_target) * double(w) / double(h));
  }
  Image r = (nh == h && nw == w) ? image : resize(image, nh, nw, interp);
  // torchvision CenterCrop: pad symmetrically (0) when smaller, then offsets round((H - size) / 2).
  int64_t top, left;
  if (nh < size) {
    top = -((size - nh) / 2);
  } else {
    top = int64_t(std::nearbyint(double(nh - size) / 2.0));
  }
  if (nw < size) {
    left = -((size - nw) / 2);
  } else {
    left = int64_t(std::nearbyint(double(nw - size) / 2.0));
  }
  return crop(r, top, left, size, size, 0);
}

void imagenet_eval_transform(const Image& image, int64_t size, float* out, Layout layout, double crop_pct,
                             const Normalization& norm) {
  Image img = eval_resize_crop(image, size, crop_pct, Interpolation::Bicubic);
  normalize_into(img, out, layout, norm);
}

}  // namespace unirep
