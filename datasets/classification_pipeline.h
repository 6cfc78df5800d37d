// The per-record transforms of classification training and evaluation, as DataLoader fetch
// functions over a ShardedDataset: read the record, decode, augment, normalise into the batch row
// (NHWC float32), write the label.
//
// Pipelines
//  * ImageNet (spec 6.4): train = RandomResizedCrop (bicubic) + flip + RandAugment + normalise +
//    random erasing; eval = resize the short side to size / crop_pct and center-crop (size >= 384:
//    warp). JPEG records decode only the region the crop needs.
//  * Small (raw low-resolution images such as Fashion-MNIST's 28x28): the image sits centred on a
//    size x size canvas of zero pixels (images larger than the canvas are first resized, bilinear, to
//    fit), shifted in training by a uniform integer offset in [-translate, translate] on each axis and
//    flipped horizontally with probability hflip; evaluation keeps it centred. Then normalise, and
//    in training random erasing (imagenet.erasing) when its probability is > 0.
//  * None: resize to size x size (bilinear) when needed and normalise, in both modes; random erasing
//    in training as for Small.
//
// Randomness: every record draws from its own stream make_rng(seed, epoch, index), so a sample's
// augmentation does not depend on the worker thread, the batch or the rank that fetched it, and a
// resumed run draws exactly what the uninterrupted one drew.
#pragma once
#include <memory>
#include <string>

#include "datasets/loader.h"
#include "datasets/shards.h"
#include "datasets/transforms.h"

namespace unirep {

struct ClassificationPipeline {
  enum class Kind { ImageNet, Small, None };
  Kind kind = Kind::ImageNet;
  int64_t size = 224;    // output height = width
  int64_t channels = 3;  // output channels: 1 or 3 (a grey record is replicated to 3; an RGB one to 1 is an error)
  Normalization norm;
  ImageNetTrainConfig imagenet;    // ImageNet kind: the train augmentation (size and norm are overwritten)
  double crop_pct = 224.0 / 256.0;  // ImageNet kind: evaluation crop
  int64_t translate = 4;           // Small kind
  double hflip = 0.5;              // Small kind
};

ClassificationPipeline::Kind parse_pipeline_kind(const std::string& name);  // "imagenet" | "small" | "none"

// Fetch functions for DataLoader (datasets/loader.h). `dataset` must outlive them. With the dataset's
// skip_corrupt policy a record that cannot be read or decoded returns false (the loader logs, counts
// and substitutes it); otherwise the error names the record. A label outside [0, num_classes) is an
// error naming the record and the range.
FetchFn make_classification_fetch(std::shared_ptr<const ShardedDataset> dataset, const ClassificationPipeline& pipeline,
                                  bool train, uint64_t seed, int64_t num_classes);

}  // namespace unirep
