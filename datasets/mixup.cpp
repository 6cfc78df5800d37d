// Mixup / CutMix (see mixup.h). The float32 arithmetic follows timm's tensor ops one by one
// (x * lam + x_flipped * (1 - lam); targets y1 * lam + y2 * (1 - lam)), each product rounded to float
// before the sum, which holds because CMake compiles this file without FMA contraction.
#include "datasets/mixup.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace unirep {

MixDecision sample_mix(const MixupConfig& cfg, int64_t height, int64_t width, Rng& rng) {
  UNIREP_CHECK(cfg.mixup_alpha >= 0 && cfg.cutmix_alpha >= 0, "mixup: alphas must be >= 0, got mixup ",
               cfg.mixup_alpha, ", cutmix ", cfg.cutmix_alpha);
  UNIREP_CHECK(height > 0 && width > 0, "mixup: image size must be positive, got ", height, "x", width);
  MixDecision d;
  const bool enabled = cfg.mixup_alpha > 0 || cfg.cutmix_alpha > 0;
  if (!enabled || !(rand_uniform(rng) < cfg.prob)) return d;
  double lam;
  if (cfg.mixup_alpha > 0 && cfg.cutmix_alpha > 0) {
    d.cutmix = rand_uniform(rng) < cfg.switch_prob;
    lam = d.cutmix ? rand_beta(rng, cfg.cutmix_alpha, cfg.cutmix_alpha)
                   : rand_beta(rng, cfg.mixup_alpha, cfg.mixup_alpha);
  } else if (cfg.mixup_alpha > 0) {
    lam = rand_beta(rng, cfg.mixup_alpha, cfg.mixup_alpha);
  } else {
    d.cutmix = true;
    lam = rand_beta(rng, cfg.cutmix_alpha, cfg.cutmix_alpha);
  }
  d.lambda = lam;
  if (lam == 1.0) {
    d.cutmix = false;
    return d;
  }
  d.mixed = true;
  if (d.cutmix) {
    // timm rand_bbox: int() truncation, randint upper bound exclusive, // floor division (non-negative).
    const double ratio = std::sqrt(1.0 - lam);
    const int64_t cut_h = int64_t(double(height) * ratio), cut_w = int64_t(double(width) * ratio);
    const int64_t cy = rand_int(rng, 0, height - 1), cx = rand_int(rng, 0, width - 1);
    d.y0 = std::clamp<int64_t>(cy - cut_h / 2, 0, height);
    d.y1 = std::clamp<int64_t>(cy + cut_h / 2, 0, height);
    d.x0 = std::clamp<int64_t>(cx - cut_w / 2, 0, width);
    d.x1 = std::clamp<int64_t>(cx + cut_w / 2, 0, width);
    if (cfg.correct_lam) d.lambda = 1.0 - double((d.y1 - d.y0) * (d.x1 - d.x0)) / double(height * width);
  }
  return d;
}

void apply_mix(float* batch, int64_t n, int64_t height, int64_t width, int64_t channels, bool channels_last,
               const MixDecision& d) {
  UNIREP_CHECK(n % 2 == 0, "mixup: the batch size must be even (images are mixed with the flipped batch), got ",
               n);
  if (!d.mixed) return;
  const int64_t per = height * width * channels;
  for (int64_t i = 0; i < n / 2; ++i) {
    float* a = batch + i * per;
    float* b = batch + (n - 1 - i) * per;
    if (d.cutmix) {
      // Swap the box between the pair: each gets the other's (the flipped batch's) pixels.
      if (channels_last) {
        const int64_t len = (d.x1 - d.x0) * channels;
        for (int64_t y = d.y0; y < d.y1; ++y) {
          float* ra = a + (y * width + d.x0) * channels;
          float* rb = b + (y * width + d.x0) * channels;
          std::swap_ranges(ra, ra + len, rb);
        }
      } else {
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t y = d.y0; y < d.y1; ++y) {
            float* ra = a + (c * height + y) * width + d.x0;
            float* rb = b + (c * height + y) * width + d.x0;
            std::swap_ranges(ra, ra + (d.x1 - d.x0), rb);
          }
      }
    } else {
      const float lam = float(d.lambda), rest = float(1.0 - d.lambda);
      for (int64_t k = 0; k < per; ++k) {
        const float va = a[k], vb = b[k];
        const float a_keep = va * lam, b_keep = vb * lam, a_give = va * rest, b_give = vb * rest;
        a[k] = a_keep + b_give;
        b[k] = b_keep + a_give;
      }
    }
  }
}

void mix_targets(const int64_t* labels, int64_t n, int64_t num_classes, double smoothing, double lambda,
                 float* targets) {
  UNIREP_CHECK(num_classes > 0, "mixup: num_classes must be positive, got ", num_classes);
  UNIREP_CHECK(smoothing >= 0 && smoothing < 1, "mixup: label smoothing must be in [0, 1), got ", smoothing);
  UNIREP_CHECK(n % 2 == 0, "mixup: the batch size must be even, got ", n);
  for (int64_t i = 0; i < n; ++i)
    UNIREP_CHECK(labels[i] >= 0 && labels[i] < num_classes, "mixup: label ", labels[i], " of sample ", i,
                 " is outside [0, ", num_classes, ")");
  const double off_d = smoothing / double(num_classes);
  const float off = float(off_d), on = float(1.0 - smoothing + off_d);
  const float lam = float(lambda), rest = float(1.0 - lambda);
  // y1 * lam + y2 * (1 - lam), each product rounded to float32 first.
  const float off_off = off * lam + off * rest, on_off = on * lam + off * rest, off_on = off * lam + on * rest,
              on_on = on * lam + on * rest;
  for (int64_t i = 0; i < n; ++i) {
    float* t = targets + i * num_classes;
    std::fill(t, t + num_classes, off_off);
    const int64_t a = labels[i], b = labels[n - 1 - i];
    if (a == b) {
      t[a] = on_on;
    } else {
      t[a] = on_off;
      t[b] = off_on;
    }
  }
}

MixDecision mixup_cutmix(float* batch, int64_t n, int64_t height, int64_t width, int64_t channels,
                         bool channels_last, const int64_t* labels, float* targets, const MixupConfig& cfg,
                         Rng& rng) {
  UNIREP_CHECK(n % 2 == 0, "mixup: the batch size must be even (images are mixed with the flipped batch), got ",
               n);
  MixDecision d = sample_mix(cfg, height, width, rng);
  apply_mix(batch, n, height, width, channels, channels_last, d);
  mix_targets(labels, n, cfg.num_classes, cfg.label_smoothing, d.lambda, targets);
  return d;
}

Tensor mixup_cutmix(Tensor& images, const Tensor& labels, const MixupConfig& cfg, Rng& rng, bool channels_last) {
  UNIREP_CHECK(images.defined() && labels.defined(), "mixup: undefined images or labels");
  UNIREP_CHECK(!images.is_cuda() && images.dtype() == DType::Float32 && images.is_contiguous() && images.dim() == 4,
               "mixup: expected contiguous float32 CPU images [N, ", channels_last ? "H, W, C" : "C, H, W",
               "], got ", images.str());
  UNIREP_CHECK(!labels.is_cuda() && labels.dtype() == DType::Int64 && labels.dim() == 1 &&
                   labels.size(0) == images.size(0) && labels.is_contiguous(),
               "mixup: expected int64 CPU labels [", images.size(0), "], got ", labels.str());
  const int64_t n = images.size(0);
  const int64_t h = images.size(channels_last ? 1 : 2), w = images.size(channels_last ? 2 : 3),
                c = images.size(channels_last ? 3 : 1);
  Tensor targets = Tensor::empty({n, cfg.num_classes});
  mixup_cutmix(images.data<float>(), n, h, w, c, channels_last, labels.data<int64_t>(), targets.data<float>(), cfg,
               rng);
  return targets;
}

}  // namespace unirep
