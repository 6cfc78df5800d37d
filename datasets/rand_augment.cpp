// RandAugment ops (see rand_augment.h for the semantics and the magnitude table).
//
// Bit-exactness with PIL: the affine bicubic evaluates PIL's cubic in the same Horner form, in double,
// with the same operation order; the enhance blends run in float32 as PIL does. This relies on the
// compiler not contracting a * b + c into an FMA, which CMake turns off for this file
// (-ffp-contract=off). Costs: the LUT ops are one table lookup per byte; the affine ops special-case the
// axes with an integer source position (fraction 0), where PIL's cubic reduces to a copy of the sample,
// so Shear/Translate interpolate along one axis only and only Rotate runs the full 4x4 kernel. With
// AVX2, RGB pixels run the cubic on the three channels at once (double lanes, PIL's operation order per
// lane), and ShearX/TranslateX (ShearY/TranslateY on the transposed image) four pixels at a time; the
// tests check these paths against the scalar code channel by channel and against Pillow.
#include "datasets/rand_augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace unirep {

const char* augment_op_name(AugmentOp op) {
  switch (op) {
    case AugmentOp::AutoContrast: return "AutoContrast";
    case AugmentOp::Equalize: return "Equalize";
    case AugmentOp::Invert: return "Invert";
    case AugmentOp::Rotate: return "Rotate";
    case AugmentOp::PosterizeIncreasing: return "PosterizeIncreasing";
    case AugmentOp::SolarizeIncreasing: return "SolarizeIncreasing";
    case AugmentOp::SolarizeAdd: return "SolarizeAdd";
    case AugmentOp::ColorIncreasing: return "ColorIncreasing";
    case AugmentOp::ContrastIncreasing: return "ContrastIncreasing";
    case AugmentOp::BrightnessIncreasing: return "BrightnessIncreasing";
    case AugmentOp::SharpnessIncreasing: return "SharpnessIncreasing";
    case AugmentOp::ShearX: return "ShearX";
    case AugmentOp::ShearY: return "ShearY";
    case AugmentOp::TranslateXRel: return "TranslateXRel";
    case AugmentOp::TranslateYRel: return "TranslateYRel";
  }
  return "?";
}

std::vector<AugmentOp> rand_augment_increasing_ops() {
  return {AugmentOp::AutoContrast,        AugmentOp::Equalize,           AugmentOp::Invert,
          AugmentOp::Rotate,              AugmentOp::PosterizeIncreasing, AugmentOp::SolarizeIncreasing,
          AugmentOp::SolarizeAdd,         AugmentOp::ColorIncreasing,     AugmentOp::ContrastIncreasing,
          AugmentOp::BrightnessIncreasing, AugmentOp::SharpnessIncreasing, AugmentOp::ShearX,
          AugmentOp::ShearY,              AugmentOp::TranslateXRel,       AugmentOp::TranslateYRel};
}

RandAugmentConfig parse_rand_augment(const std::string& spec) {
  RandAugmentConfig cfg;
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dash = spec.find('-', start);
    parts.push_back(spec.substr(start, dash == std::string::npos ? std::string::npos : dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  UNIREP_CHECK(!parts.empty() && parts[0] == "rand", "parse_rand_augment: expected 'rand-...', got '", spec, "'");
  bool increasing = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    size_t k = 0;
    while (k < p.size() && std::isalpha(static_cast<unsigned char>(p[k]))) ++k;
    std::string key = p.substr(0, k), value = p.substr(k);
    double v = 0;
    try {
      size_t used = 0;
      v = std::stod(value, &used);
      UNIREP_CHECK(used == value.size(), "");
    } catch (...) {
      throw Error("parse_rand_augment: bad value in '" + p + "' of '" + spec + "'");
    }
    if (key == "m") {
      cfg.magnitude = v;
    } else if (key == "n") {
      cfg.num_ops = int(v);
    } else if (key == "mstd") {
      cfg.magnitude_std = v;
    } else if (key == "mmax") {
      cfg.magnitude_max = v;
    } else if (key == "p") {
      cfg.prob = v;
    } else if (key == "inc") {
      increasing = v != 0;
    } else {
      throw Error("parse_rand_augment: unknown key '" + key + "' in '" + spec + "'");
    }
  }
  UNIREP_CHECK(increasing, "parse_rand_augment: only the increasing op set ('inc1') is implemented, got '", spec,
               "'");
  UNIREP_CHECK(cfg.num_ops >= 0 && cfg.prob >= 0 && cfg.prob <= 1 && cfg.magnitude_std >= 0,
               "parse_rand_augment: out-of-range value in '", spec, "'");
  return cfg;
}

// ------------------------------------------------------------------------------- LUT ops

namespace {

// One 256-entry table per channel.
using Luts = std::array<std::array<uint8_t, 256>, 3>;

void apply_luts(Image& img, const Luts& lut) {
  const int64_t c = img.channels, n = img.height * img.width;
  uint8_t* p = img.data.data();
  if (c == 1) {
    for (int64_t i = 0; i < n; ++i) p[i] = lut[0][p[i]];
    return;
  }
  for (int64_t i = 0; i < n; ++i, p += 3) {
    p[0] = lut[0][p[0]];
    p[1] = lut[1][p[1]];
    p[2] = lut[2][p[2]];
  }
}

void apply_lut(Image& img, const std::array<uint8_t, 256>& lut) {
  uint8_t* p = img.data.data();
  const size_t n = img.numel();
  for (size_t i = 0; i < n; ++i) p[i] = lut[p[i]];
}

std::array<std::array<int64_t, 256>, 3> histograms(const Image& img) {
  std::array<std::array<int64_t, 256>, 3> h{};
  const int64_t c = img.channels, n = img.height * img.width;
  const uint8_t* p = img.data.data();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) h[size_t(k)][p[i * c + k]]++;
  return h;
}

inline uint8_t luma(const uint8_t* p) {
  return uint8_t((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

// PIL ImagingBlend: out = a + alpha * (b - a) in float32, truncated; clamped when alpha is outside [0, 1].
inline uint8_t blend_px(int a, int b, float alpha, bool clamp) {
  float t = float(a) + alpha * float(b - a);
  if (!clamp) return uint8_t(t);
  return t <= 0.f ? uint8_t(0) : t >= 255.f ? uint8_t(255) : uint8_t(t);
}

void blend_with(Image& img, const uint8_t* degenerate, float alpha) {
  const bool clamp = !(alpha >= 0.f && alpha <= 1.f);
  uint8_t* p = img.data.data();
  const size_t n = img.numel();
  for (size_t i = 0; i < n; ++i) p[i] = blend_px(degenerate[i], p[i], alpha, clamp);
}

void check_image(const Image& img, const char* op) {
  UNIREP_CHECK(img.channels == 1 || img.channels == 3, op, ": expected a 1- or 3-channel image, got ",
               img.shape_str());
  UNIREP_CHECK(img.data.size() == img.numel(), op, ": image data holds ", img.data.size(), " bytes for shape ",
               img.shape_str());
}

}  // namespace

void auto_contrast(Image& img) {
  check_image(img, "auto_contrast");
  auto h = histograms(img);
  Luts lut;
  for (int64_t c = 0; c < img.channels; ++c) {
    const auto& hc = h[size_t(c)];
    int lo = 0, hi = 255;
    while (lo < 256 && hc[size_t(lo)] == 0) ++lo;
    while (hi >= 0 && hc[size_t(hi)] == 0) --hi;
    for (int i = 0; i < 256; ++i) lut[size_t(c)][size_t(i)] = uint8_t(i);
    if (hi <= lo) continue;
    const double scale = 255.0 / double(hi - lo), offset = -double(lo) * scale;
    for (int i = 0; i < 256; ++i) {
      int v = int(double(i) * scale + offset);  // truncation toward zero, as Python's int()
      lut[size_t(c)][size_t(i)] = uint8_t(std::clamp(v, 0, 255));
    }
  }
  apply_luts(img, lut);
}

void equalize(Image& img) {
  check_image(img, "equalize");
  auto h = histograms(img);
  Luts lut;
  for (int64_t c = 0; c < img.channels; ++c) {
    const auto& hc = h[size_t(c)];
    for (int i = 0; i < 256; ++i) lut[size_t(c)][size_t(i)] = uint8_t(i);
    int64_t total = 0, present = 0, last = 0;
    for (int i = 0; i < 256; ++i)
      if (hc[size_t(i)]) total += hc[size_t(i)], present++, last = hc[size_t(i)];
    if (present <= 1) continue;
    const int64_t step = (total - last) / 255;
    if (step == 0) continue;
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      lut[size_t(c)][size_t(i)] = uint8_t(std::min<int64_t>(n / step, 255));
      n += hc[size_t(i)];
    }
  }
  apply_luts(img, lut);
}

void invert(Image& img) {
  check_image(img, "invert");
  for (auto& v : img.data) v = uint8_t(255 - v);
}

void posterize(Image& img, int bits) {
  check_image(img, "posterize");
  UNIREP_CHECK(bits >= 0, "posterize: bits must be >= 0, got ", bits);
  if (bits >= 8) return;
  const uint8_t mask = uint8_t(~((1 << (8 - bits)) - 1));
  for (auto& v : img.data) v &= mask;
}

void solarize(Image& img, int threshold) {
  check_image(img, "solarize");
  std::array<uint8_t, 256> lut;
  for (int i = 0; i < 256; ++i) lut[size_t(i)] = uint8_t(i < threshold ? i : 255 - i);
  apply_lut(img, lut);
}

void solarize_add(Image& img, int add, int threshold) {
  check_image(img, "solarize_add");
  std::array<uint8_t, 256> lut;
  for (int i = 0; i < 256; ++i) lut[size_t(i)] = uint8_t(i < threshold ? std::clamp(i + add, 0, 255) : i);
  apply_lut(img, lut);
}

void enhance_color(Image& img, double factor) {
  check_image(img, "enhance_color");
  if (img.channels == 1) return;  // grey is its own degenerate
  const int64_t n = img.height * img.width;
  const float alpha = float(factor);
  const bool clamp = !(alpha >= 0.f && alpha <= 1.f);
  uint8_t* p = img.data.data();
  for (int64_t i = 0; i < n; ++i, p += 3) {
    const int g = luma(p);
    p[0] = blend_px(g, p[0], alpha, clamp);
    p[1] = blend_px(g, p[1], alpha, clamp);
    p[2] = blend_px(g, p[2], alpha, clamp);
  }
}

void enhance_contrast(Image& img, double factor) {
  check_image(img, "enhance_contrast");
  const int64_t n = img.height * img.width;
  if (n == 0) return;
  int64_t sum = 0;
  const uint8_t* p = img.data.data();
  if (img.channels == 3) {
    for (int64_t i = 0; i < n; ++i) sum += luma(p + 3 * i);
  } else {
    for (int64_t i = 0; i < n; ++i) sum += p[i];
  }
  // ImageStat's mean is sum(i * hist[i]) / count in double.
  const int mean = int(double(sum) / double(n) + 0.5);
  const float alpha = float(factor);
  const bool clamp = !(alpha >= 0.f && alpha <= 1.f);
  for (auto& v : img.data) v = blend_px(mean, v, alpha, clamp);
}

void enhance_brightness(Image& img, double factor) {
  check_image(img, "enhance_brightness");
  const float alpha = float(factor);
  const bool clamp = !(alpha >= 0.f && alpha <= 1.f);
  for (auto& v : img.data) v = blend_px(0, v, alpha, clamp);
}

void enhance_sharpness(Image& img, double factor) {
  check_image(img, "enhance_sharpness");
  const int64_t h = img.height, w = img.width, c = img.channels;
  if (h < 3 || w < 3) return;  // PIL's filter leaves images this small unchanged: blend with itself
  // SMOOTH = [1 1 1; 1 5 1; 1 1 1] / 13 with rounding; the border rows/columns are copied. PIL sums the
  // float products and rounds (x + 0.5): since 13 is odd, n / 13 is never at a .5 tie, so the integer
  // form (n + 6) / 13 is exactly the same.
  std::vector<uint8_t> smooth(img.data);
  const int64_t stride = w * c;
  for (int64_t y = 1; y < h - 1; ++y) {
    const uint8_t* r0 = img.data.data() + (y - 1) * stride;
    const uint8_t* r1 = r0 + stride;
    const uint8_t* r2 = r1 + stride;
    uint8_t* out = smooth.data() + y * stride;
    for (int64_t i = c; i < stride - c; ++i) {
      int s = r0[i - c] + r0[i] + r0[i + c] + r1[i - c] + 5 * r1[i] + r1[i + c] + r2[i - c] + r2[i] + r2[i + c];
      out[i] = uint8_t((s + 6) / 13);
    }
  }
  blend_with(img, smooth.data(), float(factor));
}

// ---------------------------------------------------------------------------- affine ops

namespace {

// PIL Geometry.c's cubic (a = -1), Horner form, double; v2 is the sample at floor(x).
inline double pil_cubic(double v1, double v2, double v3, double v4, double d) {
  double p1 = v2;
  double p2 = -v1 + v3;
  double p3 = 2 * (v1 - v2) + v3 - v4;
  double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

inline uint8_t clip_trunc(double v) { return v < 0.0 ? uint8_t(0) : v >= 255.0 ? uint8_t(255) : uint8_t(v); }

inline int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

#if defined(__AVX2__)
// The same cubic on the three channels of an RGB pixel at once (lane 3 unused): the lanes run PIL's
// exact operation sequence, so the results are bit-identical to pil_cubic.
inline __m256d load_rgb(const uint8_t* p) {
  const int32_t v = int32_t(p[0]) | (int32_t(p[1]) << 8) | (int32_t(p[2]) << 16);
  return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(v)));
}

// The same from a 4-byte load where the buffer allows it (lane 3 then holds a neighbour byte, unused).
inline __m256d load_rgb4(const uint8_t* p, const uint8_t* end) {
  if (p + 4 > end) return load_rgb(p);
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(v)));
}

inline __m256d cubic_v(__m256d v1, __m256d v2, __m256d v3, __m256d v4, __m256d d) {
  const __m256d p2 = _mm256_add_pd(_mm256_sub_pd(_mm256_setzero_pd(), v1), v3);
  const __m256d t = _mm256_sub_pd(v1, v2);
  const __m256d p3 = _mm256_sub_pd(_mm256_add_pd(_mm256_add_pd(t, t), v3), v4);
  const __m256d p4 = _mm256_add_pd(_mm256_sub_pd(_mm256_add_pd(_mm256_sub_pd(_mm256_setzero_pd(), v1), v2), v3), v4);
  return _mm256_add_pd(v2, _mm256_mul_pd(d, _mm256_add_pd(p2, _mm256_mul_pd(d, _mm256_add_pd(p3, _mm256_mul_pd(d, p4))))));
}

inline void store_rgb(uint8_t* o, __m256d v) {
  v = _mm256_min_pd(_mm256_max_pd(v, _mm256_setzero_pd()), _mm256_set1_pd(255.0));
  alignas(16) int32_t r[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(r), _mm256_cvttpd_epi32(v));
  o[0] = uint8_t(r[0]);
  o[1] = uint8_t(r[1]);
  o[2] = uint8_t(r[2]);
}
#endif

}  // namespace

namespace {

struct AffineContext {
  const uint8_t* in;
  const uint8_t* in_end;
  int64_t h, w, c, stride;
  std::array<double, 6> m;
  Interpolation interp;
  std::array<uint8_t, 3> fill;
};

// One output pixel (x, y) of PIL's affine transform, written to o.
inline void affine_pixel(const AffineContext& ctx, int64_t x, double yo, uint8_t* o) {
  const uint8_t* in = ctx.in;
  [[maybe_unused]] const uint8_t* in_end = ctx.in_end;
  const int64_t h = ctx.h, w = ctx.w, c = ctx.c, stride = ctx.stride;
  const std::array<double, 6>& m = ctx.m;
  const Interpolation interp = ctx.interp;
  const std::array<uint8_t, 3>& fill = ctx.fill;
  const double xo = double(x) + 0.5;
  double xin = m[0] * xo + m[1] * yo + m[2];
  double yin = m[3] * xo + m[4] * yo + m[5];
  if (!(xin >= 0.0 && xin < double(w) && yin >= 0.0 && yin < double(h))) {
    for (int64_t k = 0; k < c; ++k) o[k] = fill[size_t(k)];
    return;
  }
  if (interp == Interpolation::Nearest) {
    const uint8_t* s = in + int64_t(yin) * stride + int64_t(xin) * c;
    for (int64_t k = 0; k < c; ++k) o[k] = s[k];
    return;
  }
  xin -= 0.5;
  yin -= 0.5;
  const double fx = std::floor(xin), fy = std::floor(yin);
  const double dx = xin - fx, dy = yin - fy;
  const int64_t ix = int64_t(fx), iy = int64_t(fy);
  if (interp == Interpolation::Bilinear) {
    // PIL: v = a + (b - a) * d along x on two rows, then along y; truncated.
    const int64_t x0 = clampi(ix, 0, w - 1) * c, x1 = clampi(ix + 1, 0, w - 1) * c;
    const uint8_t* r0 = in + clampi(iy, 0, h - 1) * stride;
    const uint8_t* r1 = in + clampi(iy + 1, 0, h - 1) * stride;
    for (int64_t k = 0; k < c; ++k) {
      double v1 = r0[x0 + k] + (double(r0[x1 + k]) - r0[x0 + k]) * dx;
      double v2 = r1[x0 + k] + (double(r1[x1 + k]) - r1[x0 + k]) * dx;
      o[k] = clip_trunc(v1 + (v2 - v1) * dy);
    }
    return;
  }
  int64_t xs[4];
  for (int i = 0; i < 4; ++i) xs[i] = clampi(ix - 1 + i, 0, w - 1) * c;
#if defined(__AVX2__)
  if (c == 3) {
    const __m256d vdx = _mm256_set1_pd(dx);
    // Interior pixels read their four taps of a row with one 16-byte load (12 bytes used).
    const bool x_inside = ix >= 1 && ix + 2 < w;
    auto row_cubic = [&](const uint8_t* r) {
      const uint8_t* p = r + (ix - 1) * 3;
      if (x_inside && p + 16 <= in_end) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        return cubic_v(_mm256_cvtepi32_pd(_mm_cvtepu8_epi32(b)),
                       _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(b, 3))),
                       _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(b, 6))),
                       _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(b, 9))), vdx);
      }
      return cubic_v(load_rgb(r + xs[0]), load_rgb(r + xs[1]), load_rgb(r + xs[2]), load_rgb(r + xs[3]), vdx);
    };
    if (dy == 0.0) {
      store_rgb(o, row_cubic(in + clampi(iy, 0, h - 1) * stride));
      return;
    }
    __m256d v[4];
    for (int j = 0; j < 4; ++j) {
      const uint8_t* r = in + clampi(iy - 1 + j, 0, h - 1) * stride;
      v[j] = dx == 0.0 ? load_rgb4(r + xs[1], in_end) : row_cubic(r);
    }
    store_rgb(o, cubic_v(v[0], v[1], v[2], v[3], _mm256_set1_pd(dy)));
    return;
  }
#endif
  if (dy == 0.0) {
    // The y cubic at d = 0 returns its second sample exactly: only row iy matters.
    const uint8_t* r = in + clampi(iy, 0, h - 1) * stride;
    for (int64_t k = 0; k < c; ++k)
      o[k] = clip_trunc(pil_cubic(r[xs[0] + k], r[xs[1] + k], r[xs[2] + k], r[xs[3] + k], dx));
    return;
  }
  const uint8_t* rows[4];
  for (int j = 0; j < 4; ++j) rows[j] = in + clampi(iy - 1 + j, 0, h - 1) * stride;
  if (dx == 0.0) {
    const int64_t xc = xs[1];
    for (int64_t k = 0; k < c; ++k)
      o[k] = clip_trunc(
          pil_cubic(rows[0][xc + k], rows[1][xc + k], rows[2][xc + k], rows[3][xc + k], dy));
    return;
  }
  for (int64_t k = 0; k < c; ++k) {
    double v[4];
    for (int j = 0; j < 4; ++j) {
      const uint8_t* r = rows[j];
      v[j] = pil_cubic(r[xs[0] + k], r[xs[1] + k], r[xs[2] + k], r[xs[3] + k], dx);
    }
    o[k] = clip_trunc(pil_cubic(v[0], v[1], v[2], v[3], dy));
  }
}

#if defined(__AVX2__)
// Rows whose output pixels all sample their own source row (m = (a, b, c, 0, 1, 0): yin = y + 0.5
// exactly, so PIL's y cubic returns that row's x cubic): four output pixels at a time. Where the four
// source positions are consecutive pixels with all taps inside the image, their 4 x 4 taps x 3
// channels are four 12-byte runs, and the three 4-lane vectors (p0c0 p0c1 p0c2 p1c0 | p1c1 p1c2 p2c0
// p2c1 | p2c2 p3c0 p3c1 p3c2) run PIL's cubic with each lane's own fraction. Other pixels take
// affine_pixel. The arithmetic per value is PIL's, so the output is the same.
void affine_rows_rgb(const AffineContext& ctx, Image& out) {
  const int64_t w = ctx.w;
  const __m256d m0 = _mm256_set1_pd(ctx.m[0]), m2 = _mm256_set1_pd(ctx.m[2]);
  const __m256d offs = _mm256_setr_pd(0.5, 1.5, 2.5, 3.5), half = _mm256_set1_pd(0.5);
  const __m256d zero = _mm256_setzero_pd(), width = _mm256_set1_pd(double(w)), top = _mm256_set1_pd(255.0);
  const __m128i steps = _mm_setr_epi32(0, 1, 2, 3);
  for (int64_t y = 0; y < ctx.h; ++y) {
    const double yo = double(y) + 0.5;
    const __m256d m1yo = _mm256_set1_pd(ctx.m[1] * yo);
    const uint8_t* row = ctx.in + y * ctx.stride;
    uint8_t* o = out.row(y);
    int64_t x = 0;
    for (; x + 4 <= w; x += 4) {
      const __m256d xo = _mm256_add_pd(_mm256_set1_pd(double(x)), offs);
      const __m256d xin = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(m0, xo), m1yo), m2);
      const int inside = _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(xin, zero, _CMP_GE_OQ),
                                                          _mm256_cmp_pd(xin, width, _CMP_LT_OQ)));
      const __m256d xs = _mm256_sub_pd(xin, half);
      const __m256d fl = _mm256_floor_pd(xs);
      const __m256d d = _mm256_sub_pd(xs, fl);
      const __m128i ix = _mm256_cvttpd_epi32(fl);
      const int ix0 = _mm_cvtsi128_si32(ix);
      const bool consecutive =
          _mm_movemask_epi8(_mm_cmpeq_epi32(ix, _mm_add_epi32(_mm_set1_epi32(ix0), steps))) == 0xFFFF;
      const uint8_t* base = row + (int64_t(ix0) - 1) * 3;
      if (inside == 0xF && consecutive && ix0 >= 1 && int64_t(ix0) + 5 < w && base + 9 + 16 <= ctx.in_end) {
        __m256d a[4], b[4], cc[4];
        for (int t = 0; t < 4; ++t) {
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + 3 * t));
          a[t] = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(v));
          b[t] = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(v, 4)));
          cc[t] = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(v, 8)));
        }
        const __m256d d0 = _mm256_permute4x64_pd(d, 0x40), d1 = _mm256_permute4x64_pd(d, 0xA5),
                      d2 = _mm256_permute4x64_pd(d, 0xFE);
        auto fin = [&](__m256d v) { return _mm256_cvttpd_epi32(_mm256_min_pd(_mm256_max_pd(v, zero), top)); };
        const __m128i ra = fin(cubic_v(a[0], a[1], a[2], a[3], d0));
        const __m128i rb = fin(cubic_v(b[0], b[1], b[2], b[3], d1));
        const __m128i rc = fin(cubic_v(cc[0], cc[1], cc[2], cc[3], d2));
        const __m128i bytes = _mm_packus_epi16(_mm_packus_epi32(ra, rb), _mm_packus_epi32(rc, rc));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(o + 3 * x), bytes);
        const int32_t last = _mm_extract_epi32(bytes, 2);
        std::memcpy(o + 3 * x + 8, &last, 4);
        continue;
      }
      for (int64_t k = x; k < x + 4; ++k) affine_pixel(ctx, k, yo, o + 3 * k);
    }
    for (; x < w; ++x) affine_pixel(ctx, x, yo, o + 3 * x);
  }
}

Image transpose_rgb(const Image& src) {
  Image out(src.width, src.height, 3);
  for (int64_t y = 0; y < src.height; ++y) {
    const uint8_t* r = src.row(y);
    for (int64_t x = 0; x < src.width; ++x) std::memcpy(out.data.data() + (x * src.height + y) * 3, r + 3 * x, 3);
  }
  return out;
}
#endif

}  // namespace

Image affine_transform(const Image& src, const std::array<double, 6>& m, Interpolation interp,
                       const std::array<uint8_t, 3>& fill) {
  check_image(src, "affine_transform");
  const int64_t h = src.height, w = src.width, c = src.channels;
#if defined(__AVX2__)
  if (c == 3 && interp == Interpolation::Bicubic && h > 0 && w > 0) {
    if (m[3] == 0.0 && m[4] == 1.0 && m[5] == 0.0) {  // ShearX, TranslateX
      Image out(h, w, 3);
      affine_rows_rgb({src.data.data(), src.data.data() + src.numel(), h, w, 3, w * 3, m, interp, fill}, out);
      return out;
    }
    if (m[0] == 1.0 && m[1] == 0.0 && m[2] == 0.0) {  // ShearY, TranslateY: the same on the transpose
      // In transposed coordinates PIL's sums are the same products added in swapped order (exact).
      const Image t = transpose_rgb(src);
      Image out(w, h, 3);
      affine_rows_rgb({t.data.data(), t.data.data() + t.numel(), w, h, 3, h * 3, {m[4], m[3], m[5], m[1], m[0], m[2]},
                       interp, fill},
                      out);
      return transpose_rgb(out);
    }
  }
#endif
  Image out(h, w, c);
  const AffineContext ctx{src.data.data(), src.data.data() + src.numel(), h, w, c, w * c, m, interp, fill};
  for (int64_t y = 0; y < h; ++y) {
    uint8_t* o = out.row(y);
    const double yo = double(y) + 0.5;
    for (int64_t x = 0; x < w; ++x) affine_pixel(ctx, x, yo, o + x * c);
  }
  return out;
}

Image rotate(const Image& src, double degrees, Interpolation interp, const std::array<uint8_t, 3>& fill) {
  check_image(src, "rotate");
  double angle = std::fmod(degrees, 360.0);
  if (angle < 0) angle += 360.0;  // Python's % is non-negative for a positive modulus
  const int64_t h = src.height, w = src.width, c = src.channels;
  // PIL: exact transposes for 0, 180 and, on square images, 90 / 270 degrees.
  if (angle == 0.0) return src;
  if (angle == 180.0 || ((angle == 90.0 || angle == 270.0) && w == h)) {
    Image out(h, w, c);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        int64_t sy, sx;
        if (angle == 180.0) {
          sy = h - 1 - y, sx = w - 1 - x;
        } else if (angle == 90.0) {  // counter-clockwise: out(y, x) = in(x, w - 1 - y)
          sy = x, sx = w - 1 - y;
        } else {
          sy = h - 1 - x, sx = y;
        }
        std::memcpy(out.data.data() + (y * w + x) * c, src.data.data() + (sy * w + sx) * c, size_t(c));
      }
    return out;
  }
  // PIL's inverse matrix: rotation by -angle about the centre, entries rounded to 15 decimals.
  const double t = -angle * 3.14159265358979323846 / 180.0;
  auto r15 = [](double v) { return std::nearbyint(v * 1e15) / 1e15; };
  std::array<double, 6> m = {r15(std::cos(t)), r15(std::sin(t)), 0.0, r15(-std::sin(t)), r15(std::cos(t)), 0.0};
  const double cx = double(w) / 2.0, cy = double(h) / 2.0;
  m[2] = m[0] * -cx + m[1] * -cy + cx;
  m[5] = m[3] * -cx + m[4] * -cy + cy;
  return affine_transform(src, m, interp, fill);
}

// ------------------------------------------------------------------------------- RandAugment

double augment_op_argument(AugmentOp op, double m, const RandAugmentConfig& cfg, Rng& rng) {
  auto negate = [&](double v) { return rand_uniform(rng) > 0.5 ? -v : v; };  // timm _randomly_negate
  const double level = m / 10.0;  // timm's _LEVEL_DENOM
  switch (op) {
    case AugmentOp::AutoContrast:
    case AugmentOp::Equalize:
    case AugmentOp::Invert: return 0.0;
    case AugmentOp::Rotate: return negate(level * 30.0);
    case AugmentOp::PosterizeIncreasing: return double(4 - int(level * 4.0));
    case AugmentOp::SolarizeIncreasing: return double(256 - int(level * 256.0));
    case AugmentOp::SolarizeAdd: return double(int(level * 110.0));
    case AugmentOp::ColorIncreasing:
    case AugmentOp::ContrastIncreasing:
    case AugmentOp::BrightnessIncreasing:
    case AugmentOp::SharpnessIncreasing: return std::max(0.1, 1.0 + negate(level * 0.9));
    case AugmentOp::ShearX:
    case AugmentOp::ShearY: return negate(level * 0.3);
    case AugmentOp::TranslateXRel:
    case AugmentOp::TranslateYRel: return negate(level * cfg.translate_pct);
  }
  return 0.0;
}

void apply_augment_op(Image& img, AugmentOp op, double arg, const RandAugmentConfig& cfg) {
  switch (op) {
    case AugmentOp::AutoContrast: auto_contrast(img); return;
    case AugmentOp::Equalize: equalize(img); return;
    case AugmentOp::Invert: invert(img); return;
    case AugmentOp::Rotate: img = rotate(img, arg, cfg.interpolation, cfg.fill); return;
    case AugmentOp::PosterizeIncreasing: posterize(img, int(arg)); return;
    case AugmentOp::SolarizeIncreasing: solarize(img, int(arg)); return;
    case AugmentOp::SolarizeAdd: solarize_add(img, int(arg), 128); return;
    case AugmentOp::ColorIncreasing: enhance_color(img, arg); return;
    case AugmentOp::ContrastIncreasing: enhance_contrast(img, arg); return;
    case AugmentOp::BrightnessIncreasing: enhance_brightness(img, arg); return;
    case AugmentOp::SharpnessIncreasing: enhance_sharpness(img, arg); return;
    case AugmentOp::ShearX:
      img = affine_transform(img, {1, arg, 0, 0, 1, 0}, cfg.interpolation, cfg.fill);
      return;
    case AugmentOp::ShearY:
      img = affine_transform(img, {1, 0, 0, arg, 1, 0}, cfg.interpolation, cfg.fill);
      return;
    case AugmentOp::TranslateXRel:
      img = affine_transform(img, {1, 0, arg * double(img.width), 0, 1, 0}, cfg.interpolation, cfg.fill);
      return;
    case AugmentOp::TranslateYRel:
      img = affine_transform(img, {1, 0, 0, 0, 1, arg * double(img.height)}, cfg.interpolation, cfg.fill);
      return;
  }
}

void rand_augment(Image& img, const RandAugmentConfig& cfg, Rng& rng) {
  check_image(img, "rand_augment");
  UNIREP_CHECK(!cfg.ops.empty() || cfg.num_ops == 0, "rand_augment: empty op set");
  for (int i = 0; i < cfg.num_ops; ++i) {
    const AugmentOp op = cfg.ops[size_t(rand_int(rng, 0, int64_t(cfg.ops.size()) - 1))];
    // timm AugmentOp.__call__: skip with probability 1 - prob, then the magnitude draw.
    if (cfg.prob < 1.0 && rand_uniform(rng) > cfg.prob) continue;
    double m = cfg.magnitude;
    if (cfg.magnitude_std > 0) {
      if (std::isinf(cfg.magnitude_std)) {
        m = rand_uniform(rng, 0.0, m);
      } else {
        m = m + cfg.magnitude_std * rand_normal(rng);
      }
    }
    m = std::max(0.0, std::min(m, cfg.magnitude_max));
    apply_augment_op(img, op, augment_op_argument(op, m, cfg, rng), cfg);
  }
}

}  // namespace unirep
