// Mixup / CutMix with label smoothing: soft targets exactly as timm builds them, the flipped-batch
// mixing, the CutMix box and lambda correction, and the distribution of the per-batch decision.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "datasets/mixup.h"

namespace unirep {
namespace {

TEST(Mixup, SmoothedTargetsWithoutMixing) {
  MixupConfig cfg;
  cfg.prob = 0.0;  // never mix: lambda 1
  cfg.num_classes = 10;
  const int64_t n = 4;
  std::vector<float> batch(size_t(n * 2 * 2 * 3), 1.f);
  std::vector<int64_t> labels = {3, 0, 9, 3};
  std::vector<float> t(size_t(n * 10));
  Rng rng(1);
  const MixDecision d = mixup_cutmix(batch.data(), n, 2, 2, 3, true, labels.data(), t.data(), cfg, rng);
  EXPECT_FALSE(d.mixed);
  EXPECT_EQ(d.lambda, 1.0);
  const float off = float(0.1 / 10), on = float(1.0 - 0.1 + 0.1 / 10);  // timm: off = e/K, on = 1 - e + e/K
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t k = 0; k < 10; ++k) {
      const float v = t[size_t(i * 10 + k)];
      sum += v;
      if (k == labels[size_t(i)]) {
        ASSERT_FLOAT_EQ(v, on);
      } else {
        ASSERT_FLOAT_EQ(v, off);
      }
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
  for (float v : batch) ASSERT_EQ(v, 1.f);
}

TEST(Mixup, MixupMixesWithTheFlippedBatch) {
  MixupConfig cfg;
  cfg.cutmix_alpha = 0.0;  // mixup only
  cfg.num_classes = 5;
  const int64_t n = 4, h = 3, w = 2, c = 3, per = h * w * c;
  std::vector<float> batch(size_t(n * per)), orig;
  for (size_t i = 0; i < batch.size(); ++i) batch[i] = float(i % 17) * 0.25f - 1.f;
  orig = batch;
  std::vector<int64_t> labels = {1, 2, 3, 1};
  std::vector<float> t(size_t(n * 5));
  Rng rng(2);
  const MixDecision d = mixup_cutmix(batch.data(), n, h, w, c, true, labels.data(), t.data(), cfg, rng);
  ASSERT_TRUE(d.mixed);
  ASSERT_FALSE(d.cutmix);
  const float lam = float(d.lambda), rest = float(1.0 - d.lambda);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < per; ++k) {
      const float mine = orig[size_t(i * per + k)], other = orig[size_t((n - 1 - i) * per + k)];
      // timm: x * lam + x.flip(0) * (1 - lam), each product rounded to float32 (volatile keeps this
      // test file's compiler from fusing them into an FMA).
      volatile float keep = mine * lam, give = other * rest;
      ASSERT_EQ(batch[size_t(i * per + k)], keep + give);
    }
  const double off = 0.1 / 5, on = 1.0 - 0.1 + off;
  // Sample 1 (label 2) is mixed with sample 2 (label 3); sample 0 (label 1) with sample 3 (label 1).
  EXPECT_NEAR(t[size_t(1 * 5 + 2)], on * d.lambda + off * (1 - d.lambda), 1e-7);
  EXPECT_NEAR(t[size_t(1 * 5 + 3)], off * d.lambda + on * (1 - d.lambda), 1e-7);
  EXPECT_NEAR(t[size_t(1 * 5 + 0)], off, 1e-7);
  EXPECT_NEAR(t[size_t(0 * 5 + 1)], on, 1e-7);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t k = 0; k < 5; ++k) sum += t[size_t(i * 5 + k)];
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
}

TEST(Mixup, CutMixSwapsABoxAndCorrectsLambda) {
  MixupConfig cfg;
  cfg.mixup_alpha = 0.0;  // cutmix only
  cfg.num_classes = 3;
  const int64_t n = 2, h = 16, w = 20, c = 3, per = h * w * c;
  for (bool channels_last : {true, false}) {
    std::vector<float> batch(size_t(n * per));
    for (int64_t k = 0; k < per; ++k) batch[size_t(k)] = 1.f, batch[size_t(per + k)] = 2.f;
    std::vector<int64_t> labels = {0, 2};
    std::vector<float> t(size_t(n * 3));
    Rng rng(channels_last ? 3 : 4);
    MixDecision d;
    do {  // a draw with a non-empty box
      for (int64_t k = 0; k < per; ++k) batch[size_t(k)] = 1.f, batch[size_t(per + k)] = 2.f;
      d = mixup_cutmix(batch.data(), n, h, w, c, channels_last, labels.data(), t.data(), cfg, rng);
    } while (!(d.mixed && d.y1 > d.y0 && d.x1 > d.x0));
    ASSERT_TRUE(d.cutmix);
    const int64_t area = (d.y1 - d.y0) * (d.x1 - d.x0);
    EXPECT_DOUBLE_EQ(d.lambda, 1.0 - double(area) / double(h * w));
    int64_t swapped = 0;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t k = 0; k < c; ++k) {
          const int64_t idx = channels_last ? (y * w + x) * c + k : (k * h + y) * w + x;
          const bool inside = y >= d.y0 && y < d.y1 && x >= d.x0 && x < d.x1;
          ASSERT_EQ(batch[size_t(idx)], inside ? 2.f : 1.f);
          ASSERT_EQ(batch[size_t(per + idx)], inside ? 1.f : 2.f);
          swapped += inside;
        }
    EXPECT_EQ(swapped, area * c);
    const double off = 0.1 / 3, on = 1.0 - 0.1 + off;
    EXPECT_NEAR(t[0], on * d.lambda + off * (1 - d.lambda), 1e-7);
    EXPECT_NEAR(t[2], off * d.lambda + on * (1 - d.lambda), 1e-7);
    EXPECT_NEAR(t[1], off, 1e-7);
  }
}

TEST(Mixup, DecisionStatistics) {
  MixupConfig cfg;  // mixup 0.8, cutmix 1.0, switch 0.5, prob 1
  Rng rng(5);
  int cutmix = 0, mix = 0;
  double msum = 0, msum2 = 0;
  int64_t mn = 0;
  for (int i = 0; i < 4000; ++i) {
    const MixDecision d = sample_mix(cfg, 224, 224, rng);
    if (!d.mixed) continue;
    ++mix;
    if (d.cutmix) {
      ++cutmix;
      ASSERT_GE(d.y0, 0);
      ASSERT_LE(d.y1, 224);
      ASSERT_LE(d.x1, 224);
      ASSERT_GE(d.lambda, 0.0);
      ASSERT_LE(d.lambda, 1.0);
    } else {
      msum += d.lambda;
      msum2 += d.lambda * d.lambda;
      ++mn;
    }
  }
  EXPECT_GE(mix, 3990);
  EXPECT_NEAR(double(cutmix) / mix, 0.5, 0.03);
  // Beta(0.8, 0.8): mean 0.5, variance 0.64 / (2.56 * 2.6) = 0.0962.
  const double mean = msum / double(mn);
  EXPECT_NEAR(mean, 0.5, 0.02);
  EXPECT_NEAR(msum2 / double(mn) - mean * mean, 0.0962, 0.008);
}

TEST(Mixup, BadInput) {
  MixupConfig cfg;
  cfg.num_classes = 4;
  std::vector<float> batch(3 * 2 * 2 * 3);
  std::vector<int64_t> labels = {0, 1, 2};
  std::vector<float> t(3 * 4);
  Rng rng(0);
  try {
    mixup_cutmix(batch.data(), 3, 2, 2, 3, true, labels.data(), t.data(), cfg, rng);
    FAIL() << "odd batch accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be even"), std::string::npos) << e.what();
  }
  std::vector<int64_t> bad = {0, 7};
  EXPECT_THROW(mixup_cutmix(batch.data(), 2, 2, 2, 3, true, bad.data(), t.data(), cfg, rng), Error);
}

TEST(Mixup, TensorInterface) {
  MixupConfig cfg;
  cfg.num_classes = 6;
  Tensor images = Tensor::zeros({4, 8, 8, 3});
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 5}, {4});
  Rng rng(6);
  Tensor t = mixup_cutmix(images, labels, cfg, rng);
  EXPECT_EQ(t.shape(), (Shape{4, 6}));
  const auto v = t.to_vector<float>();
  for (int i = 0; i < 4; ++i) {
    double s = 0;
    for (int k = 0; k < 6; ++k) s += v[size_t(i * 6 + k)];
    EXPECT_NEAR(s, 1.0, 1e-6);
  }
  Tensor odd = Tensor::zeros({3, 8, 8, 3});
  EXPECT_THROW(mixup_cutmix(odd, labels, cfg, rng), Error);
  Tensor f64 = Tensor::zeros({4, 8, 8, 3}, DType::Float64);
  EXPECT_THROW(mixup_cutmix(f64, labels, cfg, rng), Error);
}

}  // namespace
}  // namespace unirep
