// Batch-level Mixup / CutMix with label smoothing folded into soft targets: timm's Mixup in mode
// "batch" (spec 6.3), on a normalised float32 batch on the CPU.
//
// Per batch: with probability `prob` mixing happens; if both alphas are > 0, CutMix is chosen with
// probability `switch_prob`, else Mixup; lambda ~ Beta(alpha, alpha) of the chosen one.
//  * Mixup: x_i <- lambda x_i + (1 - lambda) x_{N-1-i} (the batch flipped, as timm's x.flip(0)).
//  * CutMix: a box of cut_h = int(H sqrt(1 - lambda)), cut_w = int(W sqrt(1 - lambda)) centred at a
//    uniform integer (cy, cx) in [0, H) x [0, W), corners cy -+ cut_h // 2 (cx -+ cut_w // 2) clipped to
//    the image; the box of x_i is replaced by that of x_{N-1-i}; lambda is corrected to
//    1 - box area / (H W) (correct_lam).
//  * Targets: y = lambda * onehot(label_i) + (1 - lambda) * onehot(label_{N-1-i}) with the smoothed
//    one-hot off = smoothing / K, on = 1 - smoothing + off, in float32 as timm computes them.
// The batch size must be even (timm asserts it): the pairs (i, N-1-i) are then distinct and the flip
// can be done in place by swapping/mixing each pair once.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "datasets/random.h"

namespace unirep {

struct MixupConfig {
  double mixup_alpha = 0.8;
  double cutmix_alpha = 1.0;
  double prob = 1.0;
  double switch_prob = 0.5;
  double label_smoothing = 0.1;
  bool correct_lam = true;
  int64_t num_classes = 1000;
};

// What was done to a batch (so the same can be replayed on another copy, e.g. on the GPU).
struct MixDecision {
  bool mixed = false;       // false: lambda 1, images untouched
  bool cutmix = false;
  double lambda = 1.0;      // after the CutMix area correction
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;  // CutMix box [y0, y1) x [x0, x1)
};

// Draws the decision for a batch of height x width images.
MixDecision sample_mix(const MixupConfig& config, int64_t height, int64_t width, Rng& rng);

// Applies a decision in place to `batch` = n images of height x width x channels floats (NHWC) or
// channels x height x width (NCHW). n must be even.
void apply_mix(float* batch, int64_t n, int64_t height, int64_t width, int64_t channels, bool channels_last,
               const MixDecision& decision);

// Soft targets [n, num_classes] for the labels (each in [0, num_classes)) and lambda.
void mix_targets(const int64_t* labels, int64_t n, int64_t num_classes, double smoothing, double lambda,
                 float* targets);

// All of it: draws, mixes `batch` in place and writes the targets. Returns the decision.
MixDecision mixup_cutmix(float* batch, int64_t n, int64_t height, int64_t width, int64_t channels,
                         bool channels_last, const int64_t* labels, float* targets, const MixupConfig& config,
                         Rng& rng);

// Tensor form: images float32 CPU contiguous [N, H, W, C] (channels_last) or [N, C, H, W], mixed in
// place; labels int64 [N]; returns float32 soft targets [N, num_classes].
Tensor mixup_cutmix(Tensor& images, const Tensor& labels, const MixupConfig& config, Rng& rng,
                    bool channels_last = true);

}  // namespace unirep
