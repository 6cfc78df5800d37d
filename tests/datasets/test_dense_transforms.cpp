// Detection and segmentation pipelines: OpenCV-style resizes, box/polygon flips, crops, the
// cat_max_ratio retry, HSV conversions and the photometric distortion, output sizes and padding.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "datasets/bench.h"
#include "datasets/dense_transforms.h"

namespace unirep {
namespace {

TEST(ResizeCv2, BilinearAndNearestHandValues) {
  Image row(1, 2, 1);
  row.data = {0, 100};
  // cv2.resize(np.array([[0, 100]], np.uint8), (4, 1)) = [0, 25, 75, 100] (half-pixel centres, clamped).
  EXPECT_EQ(resize_cv2(row, 1, 4).data, (std::vector<uint8_t>{0, 25, 75, 100}));
  EXPECT_EQ(resize_cv2(row, 1, 4, Interpolation::Nearest).data, (std::vector<uint8_t>{0, 0, 100, 100}));
  // Downsampling is not antialiased: 4 -> 2 samples between pixels 0/1 and 2/3.
  Image four(1, 4, 1);
  four.data = {0, 100, 200, 40};
  EXPECT_EQ(resize_cv2(four, 1, 2).data, (std::vector<uint8_t>{50, 120}));
  Image flat(13, 17, 3, 200);
  for (uint8_t v : resize_cv2(flat, 29, 7).data) ASSERT_EQ(v, 200);
}

TEST(RescaleSize, MmcvKeepRatio) {
  EXPECT_EQ(rescale_size(500, 375, 1333, 800), (std::pair<int64_t, int64_t>{1067, 800}));
  EXPECT_EQ(rescale_size(2000, 500, 1333, 800), (std::pair<int64_t, int64_t>{1333, 333}));  // long side binds
  EXPECT_EQ(rescale_size(640, 480, 2048, 512), (std::pair<int64_t, int64_t>{683, 512}));
  EXPECT_EQ(pad_to_multiple(683, 32), 704);
  EXPECT_EQ(pad_to_multiple(512, 32), 512);
  EXPECT_THROW(rescale_size(0, 5, 10, 10), Error);
}

DetectionSample two_boxes() {
  DetectionSample s;
  s.image = synthetic_photo(60, 100, 3);
  s.ann.boxes = {{10, 20, 50, 40}, {70, 5, 99, 55}};
  s.ann.labels = {3, 7};
  s.ann.crowd = {0, 1};
  s.ann.polygons = {{{10, 20, 50, 20, 50, 40}}, {{70, 5, 99, 5, 99, 55, 70, 55}}};
  return s;
}

TEST(Detection, FlipMovesBoxesAndPolygons) {
  DetectionSample s = two_boxes();
  const Image before = s.image;
  detection_hflip(s);
  EXPECT_TRUE(s.flipped);
  EXPECT_EQ(s.ann.boxes[0], (std::array<float, 4>{50, 20, 90, 40}));  // x1' = W - x2, x2' = W - x1
  EXPECT_EQ(s.ann.boxes[1], (std::array<float, 4>{1, 5, 30, 55}));
  EXPECT_EQ(s.ann.polygons[0][0], (std::vector<float>{90, 20, 50, 20, 50, 40}));
  EXPECT_EQ(s.image.at(7, 0, 1), before.at(7, 99, 1));
  detection_hflip(s);
  EXPECT_EQ(s.ann.boxes[1], (std::array<float, 4>{70, 5, 99, 55}));
  EXPECT_EQ(s.image.data, before.data);
}

TEST(Detection, ResizeScalesAndClips) {
  DetectionSample s = two_boxes();
  s.ann.boxes[1][2] = 120;  // outside: clipped after the resize
  detection_resize(s, 1333, 120);  // 100x60 -> factor min(13.33, 2) = 2 -> 200x120
  EXPECT_EQ(s.image.shape_str(), "120x200x3");
  EXPECT_EQ(s.ann.boxes[0], (std::array<float, 4>{20, 40, 100, 80}));
  EXPECT_EQ(s.ann.boxes[1][2], 200.f);
  EXPECT_EQ(s.ann.polygons[1][0][2], 198.f);
}

TEST(Detection, RandomCropKeepsBoxesInside) {
  Rng rng(4);
  int kept_sum = 0;
  for (int t = 0; t < 50; ++t) {
    DetectionSample s = two_boxes();
    detection_resize(s, 1333, 600);  // 1000 x 600
    ASSERT_TRUE(detection_random_crop(s, 384, 600, true, rng));
    EXPECT_GE(s.image.height, 384);
    EXPECT_LE(s.image.height, 600);
    EXPECT_GE(s.image.width, 384);
    EXPECT_LE(s.image.width, 600);
    ASSERT_EQ(s.ann.labels.size(), s.ann.boxes.size());
    ASSERT_EQ(s.ann.crowd.size(), s.ann.boxes.size());
    ASSERT_EQ(s.ann.polygons.size(), s.ann.boxes.size());
    for (const auto& b : s.ann.boxes) {
      ASSERT_GE(b[0], 0.f);
      ASSERT_GE(b[1], 0.f);
      ASSERT_LE(b[2], float(s.image.width));
      ASSERT_LE(b[3], float(s.image.height));
      ASSERT_GT(b[2], b[0]);
      ASSERT_GT(b[3], b[1]);
    }
    kept_sum += int(s.ann.boxes.size());
  }
  EXPECT_GT(kept_sum, 0);
  // No box survives and negative crops are not allowed: refused, sample untouched.
  DetectionSample s = two_boxes();
  s.ann.boxes = {{0, 0, 2, 2}};
  s.ann.labels = {1};
  s.ann.crowd = {0};
  s.ann.polygons.clear();
  detection_resize(s, 2000, 1200);  // 2000 x 1200, the box at the corner (0..40)
  int refused = 0;
  for (int t = 0; t < 20; ++t) {
    DetectionSample c = s;
    if (!detection_random_crop(c, 384, 600, false, rng)) {
      ++refused;
      EXPECT_EQ(c.image.shape_str(), s.image.shape_str());
    }
  }
  EXPECT_GT(refused, 10);
}

TEST(Detection, TrainTransformSizesAndWrite) {
  DetectionTrainConfig cfg;
  std::set<int64_t> shorts;
  for (int t = 0; t < 16; ++t) {
    Rng rng = make_rng(7, 0, uint64_t(t));
    DetectionSample s = two_boxes();
    DetectionSample out = detection_train_transform(s.image, s.ann, cfg, rng);
    const int64_t lo = std::min(out.image.height, out.image.width), hi = std::max(out.image.height, out.image.width);
    EXPECT_LE(lo, 800);
    EXPECT_LE(hi, 1333);
    EXPECT_TRUE(hi == 1333 || (lo >= 480 && lo <= 800 && lo % 32 == 0)) << out.image.shape_str();
    shorts.insert(lo);
    for (const auto& b : out.ann.boxes) {
      ASSERT_LE(b[2], float(out.image.width));
      ASSERT_LE(b[3], float(out.image.height));
    }
    const int64_t ph = pad_to_multiple(out.image.height, 32), pw = pad_to_multiple(out.image.width, 32);
    std::vector<float> buf(size_t(ph * pw * 3), -7.f);
    detection_write(out, buf.data(), ph, pw, Layout::CHW);
    EXPECT_EQ(buf[size_t(ph * pw - 1)], ph > out.image.height || pw > out.image.width ? 0.f : buf[size_t(ph * pw - 1)]);
    EXPECT_NEAR(buf[0], (float(out.image.at(0, 0, 0)) - 123.675f) / 58.395f, 1e-5);
  }
  EXPECT_GT(shorts.size(), 3u);  // several scales were drawn
  // Determinism; the plain multi-scale mode keeps every box.
  Rng r1(3), r2(3);
  DetectionSample s = two_boxes();
  EXPECT_EQ(detection_train_transform(s.image, s.ann, cfg, r1).image.data,
            detection_train_transform(s.image, s.ann, cfg, r2).image.data);
  cfg.detr_policy = false;
  Rng r3(4);
  EXPECT_EQ(detection_train_transform(s.image, s.ann, cfg, r3).ann.boxes.size(), 2u);
  const DetectionSample test = detection_test_transform(s.image, s.ann);
  EXPECT_EQ(test.image.shape_str(), "800x1333x3");
  DetectionSample bad = two_boxes();
  bad.ann.labels.pop_back();
  EXPECT_THROW(detection_hflip(bad), Error);
}

Image stripe_label(int64_t h, int64_t w) {
  // Class 1 on the left 80 %, class 2 on the right 20 %.
  Image l(h, w, 1);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) l.at(y, x, 0) = x * 5 >= w * 4 ? 2 : 1;
  return l;
}

TEST(Segmentation, RandomCropRespectsCatMaxRatio) {
  const Image label = stripe_label(256, 256);
  const Image image = synthetic_photo(256, 256, 9);
  auto valid_fraction = [&](double cat_max_ratio, uint64_t seed) {
    Rng rng(seed);
    int valid = 0;
    const int trials = 300;
    for (int t = 0; t < trials; ++t) {
      SegmentationSample s{image, label};
      segmentation_random_crop(s, 128, 128, cat_max_ratio, 255, rng);
      EXPECT_EQ(s.label.shape_str(), "128x128x1");
      int64_t c2 = 0;
      for (uint8_t v : s.label.data) c2 += v == 2;
      const double most = double(std::max<int64_t>(c2, 128 * 128 - c2)) / (128.0 * 128.0);
      valid += most < 0.75;
    }
    return double(valid) / trials;
  };
  // One draw is valid with p = 20/129 = 0.155; with up to 10 checked redraws and the 11th taken
  // unchecked (mmseg): 1 - 0.845^10 + 0.845^10 * 0.155 = 0.84.
  EXPECT_NEAR(valid_fraction(1.0, 1), 0.155, 0.06);
  EXPECT_NEAR(valid_fraction(0.75, 2), 0.84, 0.06);
  // Ignored pixels do not count: with the right stripe ignored, one class remains and every draw is
  // rejected, yet a crop is still returned.
  Image ignored = label;
  for (auto& v : ignored.data) v = v == 2 ? 255 : v;
  SegmentationSample s{image, ignored};
  Rng rng(3);
  segmentation_random_crop(s, 128, 128, 0.75, 255, rng);
  EXPECT_EQ(s.image.shape_str(), "128x128x3");
  // A crop larger than the image takes the whole image.
  SegmentationSample small{synthetic_photo(40, 50, 1), stripe_label(40, 50)};
  segmentation_random_crop(small, 128, 128, 0.75, 255, rng);
  EXPECT_EQ(small.label.shape_str(), "40x50x1");
}

TEST(Segmentation, ReduceZeroLabel) {
  Image l(1, 5, 1);
  l.data = {0, 1, 2, 150, 255};
  reduce_zero_label(l);
  EXPECT_EQ(l.data, (std::vector<uint8_t>{255, 0, 1, 149, 255}));
}

TEST(Segmentation, HsvConversions) {
  Image px(1, 5, 3);
  px.data = {255, 0, 0, 0, 255, 0, 0, 0, 255, 128, 128, 128, 255, 128, 0};
  Image hsv = px;
  rgb_to_hsv(hsv);
  // OpenCV: red H 0, green 60, blue 120 (degrees / 2); grey has S 0; orange (255, 128, 0): H 15 (30 deg).
  EXPECT_EQ(hsv.at(0, 0, 0), 0);
  EXPECT_EQ(hsv.at(0, 1, 0), 60);
  EXPECT_EQ(hsv.at(0, 2, 0), 120);
  EXPECT_EQ(hsv.at(0, 0, 1), 255);
  EXPECT_EQ(hsv.at(0, 3, 1), 0);
  EXPECT_EQ(hsv.at(0, 3, 2), 128);
  EXPECT_EQ(hsv.at(0, 4, 0), 15);
  hsv_to_rgb(hsv);
  EXPECT_EQ(hsv.data, px.data);
  // Round trip on a photo: quantising H to 180 levels costs a few grey levels at most.
  const Image photo = synthetic_photo(40, 60, 12);
  Image rt = photo;
  rgb_to_hsv(rt);
  hsv_to_rgb(rt);
  double total = 0;
  int worst = 0;
  for (size_t i = 0; i < photo.numel(); ++i) {
    const int d = std::abs(int(rt.data[i]) - int(photo.data[i]));
    total += d;
    worst = std::max(worst, d);
  }
  EXPECT_LT(total / double(photo.numel()), 1.0);
  EXPECT_LE(worst, 8);
}

TEST(Segmentation, PhotometricDistortion) {
  const Image photo = synthetic_photo(32, 48, 13);
  PhotoMetricConfig cfg;
  int changed = 0;
  for (int t = 0; t < 40; ++t) {
    Image a = photo, b = photo;
    Rng r1(static_cast<uint64_t>(t)), r2(static_cast<uint64_t>(t));
    photo_metric_distortion(a, cfg, r1);
    photo_metric_distortion(b, cfg, r2);
    ASSERT_EQ(a.data, b.data);
    changed += a.data != photo.data;
  }
  // Unchanged only when all four coin flips fail: 1/16.
  EXPECT_GE(changed, 30);
  // Brightness only (the other steps disabled through their ranges): + delta, clipped, truncated.
  PhotoMetricConfig bright;
  bright.contrast_lower = bright.contrast_upper = 1.0;
  bright.saturation_lower = bright.saturation_upper = 1.0;
  bright.hue_delta = 0;
  Image flat(4, 4, 3, 250);
  for (int t = 0; t < 20; ++t) {
    Image f = flat;
    Rng rng(uint64_t(100 + t));
    photo_metric_distortion(f, bright, rng);
    for (uint8_t v : f.data) ASSERT_EQ(v, f.data[0]);  // uniform shift of a flat image
  }
}

TEST(Segmentation, TrainTransformSizesAndWrite) {
  SegmentationTrainConfig cfg;
  cfg.scale_long = 512;  // a smaller scale keeps the test fast; same code path
  cfg.scale_short = 128;
  cfg.crop_h = cfg.crop_w = 128;
  const Image image = synthetic_photo(120, 160, 14);
  const Image label = stripe_label(120, 160);
  for (int t = 0; t < 10; ++t) {
    Rng rng = make_rng(8, 0, uint64_t(t));
    const SegmentationSample s = segmentation_train_transform(image, label, cfg, rng);
    ASSERT_LE(s.image.height, 128);
    ASSERT_LE(s.image.width, 128);
    ASSERT_EQ(s.label.height, s.image.height);
    ASSERT_EQ(s.label.width, s.image.width);
    for (uint8_t v : s.label.data) ASSERT_TRUE(v == 1 || v == 2);  // nearest: no new labels
    std::vector<float> img(128 * 128 * 3, -5.f);
    std::vector<int64_t> lab(128 * 128, -5);
    segmentation_write(s, img.data(), lab.data(), 128, 128, Layout::HWC);
    for (int64_t y = 0; y < 128; ++y)
      for (int64_t x = 0; x < 128; ++x) {
        const bool inside = y < s.label.height && x < s.label.width;
        ASSERT_EQ(lab[size_t(y * 128 + x)], inside ? s.label.at(y, x, 0) : 255);
        if (!inside) {
          ASSERT_EQ(img[size_t((y * 128 + x) * 3)], 0.f);
        }
      }
  }
  const SegmentationSample test = segmentation_test_transform(synthetic_photo(375, 500, 2), Image());
  EXPECT_EQ(test.image.shape_str(), "512x704x3");  // 683 x 512 -> multiple of 32
  EXPECT_EQ(test.label.shape_str(), "512x683x1");
  SegmentationSample bad{image, stripe_label(10, 10)};
  EXPECT_THROW(segmentation_hflip(bad) , Error);
}

}  // namespace
}  // namespace unirep
