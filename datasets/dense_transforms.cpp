// Detection and segmentation pipelines (see dense_transforms.h).
#include "datasets/dense_transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace unirep {

// ---------------------------------------------------------------------------- OpenCV resizes

namespace {

constexpr int kCoefBits = 11;  // OpenCV INTER_RESIZE_COEF_BITS
constexpr int kCoefScale = 1 << kCoefBits;

// Per output coordinate: the first source index and the two 11-bit weights (OpenCV's computation:
// fx = float((d + 0.5) * scale - 0.5), sx = floor(fx), clamped to the edges with weight (1, 0)).
struct LinearTaps {
  std::vector<int64_t> index;
  std::vector<int32_t> w0, w1;
};

LinearTaps linear_taps(int64_t in, int64_t out) {
  LinearTaps t;
  t.index.resize(size_t(out));
  t.w0.resize(size_t(out));
  t.w1.resize(size_t(out));
  const double scale = 1.0 / (double(out) / double(in));
  for (int64_t d = 0; d < out; ++d) {
    float f = float((double(d) + 0.5) * scale - 0.5);
    int64_t s = int64_t(std::floor(f));
    f -= float(s);
    if (s < 0) f = 0.f, s = 0;
    if (s >= in - 1) f = 0.f, s = in - 1;
    t.index[size_t(d)] = s;
    // saturate_cast<short>(x * 2048) rounds to nearest.
    t.w0[size_t(d)] = int32_t(std::lrint((1.f - f) * kCoefScale));
    t.w1[size_t(d)] = int32_t(std::lrint(f * kCoefScale));
  }
  return t;
}

}  // namespace

Image resize_cv2(const Image& src, int64_t out_h, int64_t out_w, Interpolation interp) {
  UNIREP_CHECK(src.height > 0 && src.width > 0 && src.channels >= 1, "resize_cv2: empty image ", src.shape_str());
  UNIREP_CHECK(out_h > 0 && out_w > 0, "resize_cv2: output size must be positive, got ", out_h, "x", out_w);
  const int64_t c = src.channels;
  Image out(out_h, out_w, c);
  if (out_h == src.height && out_w == src.width) {
    out.data = src.data;
    return out;
  }
  if (interp == Interpolation::Nearest) {
    const double fx = double(src.width) / double(out_w), fy = double(src.height) / double(out_h);
    std::vector<int64_t> xs(static_cast<size_t>(out_w));
    for (int64_t x = 0; x < out_w; ++x)
      xs[size_t(x)] = std::min<int64_t>(int64_t(std::floor(double(x) * fx)), src.width - 1);
    for (int64_t y = 0; y < out_h; ++y) {
      const uint8_t* s = src.row(std::min<int64_t>(int64_t(std::floor(double(y) * fy)), src.height - 1));
      uint8_t* o = out.row(y);
      for (int64_t x = 0; x < out_w; ++x) std::memcpy(o + x * c, s + xs[size_t(x)] * c, size_t(c));
    }
    return out;
  }
  UNIREP_CHECK(interp == Interpolation::Bilinear, "resize_cv2: only bilinear and nearest are implemented");
  const LinearTaps tx = linear_taps(src.width, out_w), ty = linear_taps(src.height, out_h);
  // Horizontal pass into int rows (scale 2048), computed per needed source row.
  std::vector<int32_t> rows(static_cast<size_t>(out_w * c * 2));
  auto hrow = [&](int64_t y, int32_t* dst) {
    const uint8_t* s = src.row(y);
    for (int64_t x = 0; x < out_w; ++x) {
      const int64_t i = tx.index[size_t(x)];
      const int32_t a0 = tx.w0[size_t(x)], a1 = tx.w1[size_t(x)];
      const uint8_t* p0 = s + i * c;
      const uint8_t* p1 = s + std::min(i + 1, src.width - 1) * c;
      for (int64_t k = 0; k < c; ++k) dst[x * c + k] = int32_t(p0[k]) * a0 + int32_t(p1[k]) * a1;
    }
  };
  int32_t* r0 = rows.data();
  int32_t* r1 = rows.data() + out_w * c;
  int64_t have0 = -1, have1 = -1;
  for (int64_t y = 0; y < out_h; ++y) {
    const int64_t sy = ty.index[size_t(y)], sy1 = std::min(sy + 1, src.height - 1);
    if (have0 != sy) {
      if (have1 == sy) {
        std::swap(r0, r1);
        std::swap(have0, have1);
      } else {
        hrow(sy, r0);
        have0 = sy;
      }
    }
    if (have1 != sy1) {
      hrow(sy1, r1);
      have1 = sy1;
    }
    const int64_t b0 = ty.w0[size_t(y)], b1 = ty.w1[size_t(y)];
    uint8_t* o = out.row(y);
    for (int64_t i = 0; i < out_w * c; ++i) {
      const int64_t v = (int64_t(r0[i]) * b0 + int64_t(r1[i]) * b1 + (int64_t(1) << (2 * kCoefBits - 1))) >>
                        (2 * kCoefBits);
      o[i] = uint8_t(std::clamp<int64_t>(v, 0, 255));
    }
  }
  return out;
}

std::pair<int64_t, int64_t> rescale_size(int64_t w, int64_t h, int64_t long_edge, int64_t short_edge) {
  UNIREP_CHECK(w > 0 && h > 0 && long_edge > 0 && short_edge > 0, "rescale_size: sizes must be positive, got ", w,
               "x", h, " to (", long_edge, ", ", short_edge, ")");
  const double max_long = double(std::max(long_edge, short_edge)), max_short = double(std::min(long_edge, short_edge));
  const double f = std::min(max_long / double(std::max(h, w)), max_short / double(std::min(h, w)));
  return {int64_t(double(w) * f + 0.5), int64_t(double(h) * f + 0.5)};
}

// ------------------------------------------------------------------------------------ detection

namespace {

void check_annotations(const DetectionSample& s, const char* op) {
  const size_t n = s.ann.boxes.size();
  UNIREP_CHECK(s.ann.labels.size() == n && (s.ann.crowd.empty() || s.ann.crowd.size() == n) &&
                   (s.ann.polygons.empty() || s.ann.polygons.size() == n),
               op, ": annotation sizes disagree: ", n, " boxes, ", s.ann.labels.size(), " labels, ",
               s.ann.crowd.size(), " crowd flags, ", s.ann.polygons.size(), " polygon lists");
}

void clip_boxes(std::vector<std::array<float, 4>>& boxes, int64_t w, int64_t h) {
  for (auto& b : boxes) {
    b[0] = std::clamp(b[0], 0.f, float(w));
    b[2] = std::clamp(b[2], 0.f, float(w));
    b[1] = std::clamp(b[1], 0.f, float(h));
    b[3] = std::clamp(b[3], 0.f, float(h));
  }
}

}  // namespace

void detection_resize(DetectionSample& s, int64_t long_edge, int64_t short_edge) {
  check_annotations(s, "detection_resize");
  const int64_t h = s.image.height, w = s.image.width;
  auto [nw, nh] = rescale_size(w, h, long_edge, short_edge);
  s.image = resize_cv2(s.image, nh, nw, Interpolation::Bilinear);
  const float sx = float(double(nw) / double(w)), sy = float(double(nh) / double(h));
  for (auto& b : s.ann.boxes) {
    b[0] *= sx;
    b[2] *= sx;
    b[1] *= sy;
    b[3] *= sy;
  }
  clip_boxes(s.ann.boxes, nw, nh);
  const double psx = double(nw) / double(w), psy = double(nh) / double(h);
  for (auto& inst : s.ann.polygons)
    for (auto& poly : inst)
      for (size_t i = 0; i + 1 < poly.size(); i += 2) {
        poly[i] = float(poly[i] * psx);
        poly[i + 1] = float(poly[i + 1] * psy);
      }
}

void detection_hflip(DetectionSample& s) {
  check_annotations(s, "detection_hflip");
  hflip(s.image);
  const float w = float(s.image.width);
  for (auto& b : s.ann.boxes) {
    const float x1 = b[0], x2 = b[2];
    b[0] = w - x2;
    b[2] = w - x1;
  }
  for (auto& inst : s.ann.polygons)
    for (auto& poly : inst)
      for (size_t i = 0; i < poly.size(); i += 2) poly[i] = w - poly[i];
  s.flipped = !s.flipped;
}

bool detection_random_crop(DetectionSample& s, int64_t lo, int64_t hi, bool allow_negative_crop, Rng& rng) {
  check_annotations(s, "detection_random_crop");
  UNIREP_CHECK(lo > 0 && hi >= lo, "detection_random_crop: bad size range (", lo, ", ", hi, ")");
  const int64_t h = s.image.height, w = s.image.width;
  const int64_t ch = rand_int(rng, std::min(lo, h), std::min(hi, h));
  const int64_t cw = rand_int(rng, std::min(lo, w), std::min(hi, w));
  const int64_t oy = rand_int(rng, 0, std::max<int64_t>(h - ch, 0));
  const int64_t ox = rand_int(rng, 0, std::max<int64_t>(w - cw, 0));
  std::vector<std::array<float, 4>> boxes = s.ann.boxes;
  for (auto& b : boxes) {
    b[0] -= float(ox);
    b[2] -= float(ox);
    b[1] -= float(oy);
    b[3] -= float(oy);
  }
  clip_boxes(boxes, cw, ch);
  std::vector<size_t> keep;
  for (size_t i = 0; i < boxes.size(); ++i)
    if (boxes[i][2] > boxes[i][0] && boxes[i][3] > boxes[i][1]) keep.push_back(i);
  if (keep.empty() && !allow_negative_crop) return false;
  DetectionAnnotations a;
  for (size_t i : keep) {
    a.boxes.push_back(boxes[i]);
    a.labels.push_back(s.ann.labels[i]);
    if (!s.ann.crowd.empty()) a.crowd.push_back(s.ann.crowd[i]);
    if (!s.ann.polygons.empty()) {
      auto inst = s.ann.polygons[i];
      for (auto& poly : inst)
        for (size_t k = 0; k + 1 < poly.size(); k += 2) {
          poly[k] -= float(ox);
          poly[k + 1] -= float(oy);
        }
      a.polygons.push_back(std::move(inst));
    }
  }
  s.ann = std::move(a);
  s.image = crop(s.image, oy, ox, ch, cw);
  return true;
}

DetectionSample detection_train_transform(Image image, DetectionAnnotations ann, const DetectionTrainConfig& cfg,
                                          Rng& rng) {
  UNIREP_CHECK(!cfg.scales.empty(), "detection_train_transform: no scales");
  DetectionSample s;
  s.original_height = image.height;
  s.original_width = image.width;
  s.image = std::move(image);
  s.ann = std::move(ann);
  check_annotations(s, "detection_train_transform");
  if (rand_uniform(rng) < cfg.flip_prob) detection_hflip(s);
  auto pick = [&](const std::vector<std::pair<int64_t, int64_t>>& v) { return v[size_t(rand_int(rng, 0, int64_t(v.size()) - 1))]; };
  const bool crop_policy = cfg.detr_policy && !cfg.crop_prescales.empty() && rand_int(rng, 0, 1) == 1;
  if (crop_policy) {
    auto pre = pick(cfg.crop_prescales);
    detection_resize(s, pre.first, pre.second);
    detection_random_crop(s, cfg.crop_min, cfg.crop_max, cfg.allow_negative_crop, rng);
  }
  auto sc = pick(cfg.scales);
  detection_resize(s, sc.first, sc.second);
  return s;
}

DetectionSample detection_test_transform(Image image, DetectionAnnotations ann, int64_t long_edge, int64_t short_edge) {
  DetectionSample s;
  s.original_height = image.height;
  s.original_width = image.width;
  s.image = std::move(image);
  s.ann = std::move(ann);
  detection_resize(s, long_edge, short_edge);
  return s;
}

void detection_write(const DetectionSample& s, float* out, int64_t out_h, int64_t out_w, Layout layout,
                     const Normalization& norm) {
  normalize_into_padded(s.image, out, out_h, out_w, layout, norm, 0.f);
}

// ---------------------------------------------------------------------------------- segmentation

void reduce_zero_label(Image& label) {
  UNIREP_CHECK(label.channels == 1, "reduce_zero_label: expected a one-channel label map, got ", label.shape_str());
  for (auto& v : label.data) v = v == 0 ? uint8_t(255) : v == 255 ? uint8_t(255) : uint8_t(v - 1);
}

namespace {

void check_seg(const SegmentationSample& s, const char* op) {
  UNIREP_CHECK(s.label.channels == 1 && s.label.height == s.image.height && s.label.width == s.image.width, op,
               ": expected a one-channel label map of the image's size ", s.image.height, "x", s.image.width,
               ", got ", s.label.shape_str());
}

}  // namespace

void segmentation_resize(SegmentationSample& s, int64_t long_edge, int64_t short_edge) {
  check_seg(s, "segmentation_resize");
  auto [nw, nh] = rescale_size(s.image.width, s.image.height, long_edge, short_edge);
  s.image = resize_cv2(s.image, nh, nw, Interpolation::Bilinear);
  s.label = resize_cv2(s.label, nh, nw, Interpolation::Nearest);
}

void segmentation_random_crop(SegmentationSample& s, int64_t crop_h, int64_t crop_w, double cat_max_ratio,
                              uint8_t ignore, Rng& rng) {
  check_seg(s, "segmentation_random_crop");
  UNIREP_CHECK(crop_h > 0 && crop_w > 0, "segmentation_random_crop: crop size must be positive, got ", crop_h, "x",
               crop_w);
  const int64_t h = s.image.height, w = s.image.width;
  struct Box {
    int64_t y0, y1, x0, x1;
  };
  auto draw = [&]() {
    const int64_t oy = rand_int(rng, 0, std::max<int64_t>(h - crop_h, 0));
    const int64_t ox = rand_int(rng, 0, std::max<int64_t>(w - crop_w, 0));
    return Box{oy, std::min(oy + crop_h, h), ox, std::min(ox + crop_w, w)};
  };
  Box b = draw();
  if (cat_max_ratio < 1.0) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      std::array<int64_t, 256> cnt{};
      for (int64_t y = b.y0; y < b.y1; ++y) {
        const uint8_t* r = s.label.row(y);
        for (int64_t x = b.x0; x < b.x1; ++x) cnt[r[x]]++;
      }
      int64_t classes = 0, total = 0, most = 0;
      for (int v = 0; v < 256; ++v) {
        if (v == ignore || cnt[size_t(v)] == 0) continue;
        classes++;
        total += cnt[size_t(v)];
        most = std::max(most, cnt[size_t(v)]);
      }
      if (classes > 1 && double(most) / double(total) < cat_max_ratio) break;
      b = draw();
    }
  }
  s.image = crop(s.image, b.y0, b.x0, b.y1 - b.y0, b.x1 - b.x0);
  s.label = crop(s.label, b.y0, b.x0, b.y1 - b.y0, b.x1 - b.x0);
}

void segmentation_hflip(SegmentationSample& s) {
  check_seg(s, "segmentation_hflip");
  hflip(s.image);
  hflip(s.label);
}

// OpenCV RGB2HSV_b: s = round(255 * diff / v), h = round(30 * h' / diff) through 12-bit reciprocal tables.
void rgb_to_hsv(Image& img) {
  UNIREP_CHECK(img.channels == 3, "rgb_to_hsv: expected an RGB image, got ", img.shape_str());
  constexpr int shift = 12;
  static const auto tables = [] {
    std::array<std::array<int32_t, 256>, 2> t{};
    for (int i = 1; i < 256; ++i) {
      t[0][size_t(i)] = int32_t(std::lrint(double(255 << shift) / double(i)));
      t[1][size_t(i)] = int32_t(std::lrint(double(180 << shift) / (6.0 * i)));
    }
    return t;
  }();
  const auto& sdiv = tables[0];
  const auto& hdiv = tables[1];
  uint8_t* p = img.data.data();
  const int64_t n = img.height * img.width;
  for (int64_t i = 0; i < n; ++i, p += 3) {
    const int r = p[0], g = p[1], b = p[2];
    const int v = std::max({r, g, b}), vmin = std::min({r, g, b});
    const int diff = v - vmin;
    const int s = (diff * sdiv[size_t(v)] + (1 << (shift - 1))) >> shift;
    int h;
    if (v == r) {
      h = g - b;
    } else if (v == g) {
      h = b - r + 2 * diff;
    } else {
      h = r - g + 4 * diff;
    }
    h = (h * hdiv[size_t(diff)] + (1 << (shift - 1))) >> shift;
    if (h < 0) h += 180;
    p[0] = uint8_t(std::clamp(h, 0, 255));
    p[1] = uint8_t(s);
    p[2] = uint8_t(v);
  }
}

// OpenCV HSV2RGB_b: through floats (h * 6 / 180, s / 255, v / 255), sector table, rounded back.
void hsv_to_rgb(Image& img) {
  UNIREP_CHECK(img.channels == 3, "hsv_to_rgb: expected an HSV image, got ", img.shape_str());
  static const int sector_data[6][3] = {{1, 3, 0}, {1, 0, 2}, {3, 0, 1}, {0, 2, 1}, {0, 1, 3}, {2, 1, 0}};
  const float hscale = 6.f / 180.f;
  uint8_t* p = img.data.data();
  const int64_t n = img.height * img.width;
  for (int64_t i = 0; i < n; ++i, p += 3) {
    float h = float(p[0]), s = float(p[1]) * (1.f / 255.f), v = float(p[2]) * (1.f / 255.f);
    float b, g, r;
    if (s == 0.f) {
      b = g = r = v;
    } else {
      h *= hscale;
      while (h < 0.f) h += 6.f;
      while (h >= 6.f) h -= 6.f;
      int sector = int(std::floor(h));
      h -= float(sector);
      if (unsigned(sector) >= 6u) sector = 0, h = 0.f;
      const float tab[4] = {v, v * (1.f - s), v * (1.f - s * h), v * (1.f - s * (1.f - h))};
      b = tab[sector_data[sector][0]];
      g = tab[sector_data[sector][1]];
      r = tab[sector_data[sector][2]];
    }
    auto to8 = [](float x) { return uint8_t(std::clamp<long>(std::lrint(x * 255.f), 0L, 255L)); };
    p[0] = to8(r);
    p[1] = to8(g);
    p[2] = to8(b);
  }
}

namespace {

// mmseg convert: float32 x * alpha + beta, clipped to [0, 255], truncated.
inline uint8_t convert_px(uint8_t x, float alpha, float beta) {
  float v = float(x) * alpha + beta;
  v = std::clamp(v, 0.f, 255.f);
  return uint8_t(v);
}

}  // namespace

void photo_metric_distortion(Image& img, const PhotoMetricConfig& cfg, Rng& rng) {
  UNIREP_CHECK(img.channels == 3, "photo_metric_distortion: expected an RGB image, got ", img.shape_str());
  // numpy's randint(2): 0 or 1; uniform(a, b); randint(-d, d): [-d, d).
  if (rand_int(rng, 0, 1)) {
    const float beta = float(rand_uniform(rng, -cfg.brightness_delta, cfg.brightness_delta));
    for (auto& v : img.data) v = convert_px(v, 1.f, beta);
  }
  const int mode = int(rand_int(rng, 0, 1));
  auto contrast = [&] {
    if (rand_int(rng, 0, 1)) {
      const float alpha = float(rand_uniform(rng, cfg.contrast_lower, cfg.contrast_upper));
      for (auto& v : img.data) v = convert_px(v, alpha, 0.f);
    }
  };
  if (mode == 1) contrast();
  if (rand_int(rng, 0, 1)) {
    const float alpha = float(rand_uniform(rng, cfg.saturation_lower, cfg.saturation_upper));
    rgb_to_hsv(img);
    for (size_t i = 1; i < img.data.size(); i += 3) img.data[i] = convert_px(img.data[i], alpha, 0.f);
    hsv_to_rgb(img);
  }
  if (rand_int(rng, 0, 1)) {
    const int delta = int(rand_int(rng, -cfg.hue_delta, cfg.hue_delta - 1));
    rgb_to_hsv(img);
    for (size_t i = 0; i < img.data.size(); i += 3) img.data[i] = uint8_t(((int(img.data[i]) + delta) % 180 + 180) % 180);
    hsv_to_rgb(img);
  }
  if (mode == 0) contrast();
}

SegmentationSample segmentation_train_transform(Image image, Image label, const SegmentationTrainConfig& cfg,
                                                Rng& rng) {
  SegmentationSample s{std::move(image), std::move(label)};
  check_seg(s, "segmentation_train_transform");
  const double ratio = rand_uniform(rng, cfg.ratio_min, cfg.ratio_max);
  segmentation_resize(s, int64_t(double(cfg.scale_long) * ratio), int64_t(double(cfg.scale_short) * ratio));
  segmentation_random_crop(s, cfg.crop_h, cfg.crop_w, cfg.cat_max_ratio, cfg.ignore_index, rng);
  if (rand_uniform(rng) < cfg.flip_prob) segmentation_hflip(s);
  photo_metric_distortion(s.image, cfg.photometric, rng);
  return s;
}

SegmentationSample segmentation_test_transform(Image image, Image label, int64_t long_edge, int64_t short_edge,
                                               int64_t divisor) {
  SegmentationSample s{std::move(image), std::move(label)};
  if (s.label.empty()) s.label = Image(s.image.height, s.image.width, 1, 255);
  check_seg(s, "segmentation_test_transform");
  segmentation_resize(s, long_edge, short_edge);
  s.image = resize_cv2(s.image, pad_to_multiple(s.image.height, divisor), pad_to_multiple(s.image.width, divisor),
                       Interpolation::Bilinear);
  return s;
}

void segmentation_write(const SegmentationSample& s, float* image_out, int64_t* label_out, int64_t out_h,
                        int64_t out_w, Layout layout, const Normalization& norm, int64_t label_pad) {
  normalize_into_padded(s.image, image_out, out_h, out_w, layout, norm, 0.f);
  if (label_out == nullptr) return;
  UNIREP_CHECK(s.label.channels == 1 && s.label.height <= out_h && s.label.width <= out_w,
               "segmentation_write: label ", s.label.shape_str(), " does not fit ", out_h, "x", out_w);
  for (int64_t y = 0; y < out_h; ++y) {
    int64_t* o = label_out + y * out_w;
    if (y < s.label.height) {
      const uint8_t* r = s.label.row(y);
      for (int64_t x = 0; x < s.label.width; ++x) o[x] = r[x];
      std::fill(o + s.label.width, o + out_w, label_pad);
    } else {
      std::fill(o, o + out_w, label_pad);
    }
  }
}

}  // namespace unirep
