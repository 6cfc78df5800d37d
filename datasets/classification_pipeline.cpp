#include "datasets/classification_pipeline.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "datasets/image.h"
#include "datasets/random.h"

namespace unirep {

ClassificationPipeline::Kind parse_pipeline_kind(const std::string& name) {
  if (name == "imagenet") return ClassificationPipeline::Kind::ImageNet;
  if (name == "small") return ClassificationPipeline::Kind::Small;
  if (name == "none") return ClassificationPipeline::Kind::None;
  throw Error("unknown augmentation pipeline '" + name + "' (expected imagenet, small or none)");
}

namespace {

Image record_image(const ClassificationRecord& record, int64_t channels) {
  Image image;
  if (record.encoded) {
    image = decode_image(record.image.data(), record.image.size(), int(channels == 1 ? 1 : 3));
  } else {
    image.height = record.height, image.width = record.width, image.channels = record.channels;
    image.data = record.image;
  }
  return image;
}

// Grey to RGB by replication; RGB to grey is not done silently.
Image with_channels(Image image, int64_t channels, int64_t index) {
  if (image.channels == channels) return image;
  UNIREP_CHECK(image.channels == 1 && channels == 3, "record ", index, " has ", image.channels,
               " channels; the pipeline expects ", channels, " (model.in_chans / data)");
  Image rgb(image.height, image.width, 3);
  for (size_t p = 0; p < image.data.size(); ++p) std::memset(&rgb.data[3 * p], image.data[p], 3);
  return rgb;
}

// The Small pipeline: the (fitted) image on a size x size zero canvas at offset (dy, dx) from the
// centre, optionally mirrored, normalised into out (HWC). Canvas pixels outside the image are 0.
void place_small(const Image& src, int64_t size, int64_t dy, int64_t dx, bool flip, const Normalization& norm,
                 float* out) {
  const Image& image = src.height > size || src.width > size
                           ? resize(src, std::min(src.height, size), std::min(src.width, size), Interpolation::Bilinear)
                           : src;
  Image canvas(size, size, image.channels, 0);
  const int64_t top = (size - image.height) / 2 + dy, left = (size - image.width) / 2 + dx;
  for (int64_t y = 0; y < image.height; ++y) {
    const int64_t cy = top + y;
    if (cy < 0 || cy >= size) continue;
    for (int64_t x = 0; x < image.width; ++x) {
      const int64_t cx = left + (flip ? image.width - 1 - x : x);
      if (cx < 0 || cx >= size) continue;
      std::memcpy(&canvas.at(cy, cx, 0), image.row(y) + x * image.channels, size_t(image.channels));
    }
  }
  normalize_into(canvas, out, Layout::HWC, norm);
}

}  // namespace

FetchFn make_classification_fetch(std::shared_ptr<const ShardedDataset> dataset, const ClassificationPipeline& p,
                                  bool train, uint64_t seed, int64_t num_classes) {
  UNIREP_CHECK(dataset && dataset->is_open(), "classification pipeline: the dataset is not open");
  UNIREP_CHECK(p.channels == 1 || p.channels == 3, "classification pipeline: channels must be 1 or 3, got ", p.channels);
  ClassificationPipeline pipeline = p;
  pipeline.imagenet.size = p.size;
  pipeline.imagenet.norm = p.norm;
  pipeline.imagenet.layout = Layout::HWC;
  return [dataset, pipeline, train, seed, num_classes](int64_t index, int64_t row, Batch& batch) -> bool {
    std::optional<ClassificationRecord> record = dataset->try_read(index);
    if (!record) return false;
    UNIREP_CHECK(record->label >= 0 && record->label < num_classes, dataset->dir(), " split '", dataset->split(),
                 "' record ", index, ": label ", record->label, " is outside [0, ", num_classes, ")");
    *batch.label(row) = record->label;
    float* out = batch.image(row);
    const int64_t size = pipeline.size;
    Rng rng = make_rng(seed, uint64_t(batch.epoch), uint64_t(index));
    try {
      switch (pipeline.kind) {
        case ClassificationPipeline::Kind::ImageNet:
          if (train && record->encoded && pipeline.channels == 3 &&
              image_format(record->image.data(), record->image.size()) == "jpeg") {
            imagenet_train_transform_jpeg(record->image.data(), record->image.size(), pipeline.imagenet, rng, out);
          } else {
            Image image = with_channels(record_image(*record, pipeline.channels), pipeline.channels, index);
            if (train) {
              imagenet_train_transform(image, pipeline.imagenet, rng, out);
            } else {
              imagenet_eval_transform(image, size, out, Layout::HWC, pipeline.crop_pct, pipeline.norm);
            }
          }
          break;
        case ClassificationPipeline::Kind::Small: {
          Image image = with_channels(record_image(*record, pipeline.channels), pipeline.channels, index);
          int64_t dy = 0, dx = 0;
          bool flip = false;
          if (train) {
            dy = rand_int(rng, -pipeline.translate, pipeline.translate);
            dx = rand_int(rng, -pipeline.translate, pipeline.translate);
            flip = rand_bool(rng, pipeline.hflip);
          }
          place_small(image, size, dy, dx, flip, pipeline.norm, out);
          if (train && pipeline.imagenet.erasing.probability > 0)
            random_erasing(out, size, size, pipeline.channels, Layout::HWC, pipeline.imagenet.erasing, rng);
          break;
        }
        case ClassificationPipeline::Kind::None: {
          Image image = with_channels(record_image(*record, pipeline.channels), pipeline.channels, index);
          if (image.height != size || image.width != size) image = resize(image, size, size, Interpolation::Bilinear);
          normalize_into(image, out, Layout::HWC, pipeline.norm);
          if (train && pipeline.imagenet.erasing.probability > 0)
            random_erasing(out, size, size, pipeline.channels, Layout::HWC, pipeline.imagenet.erasing, rng);
          break;
        }
      }
    } catch (const Error& e) {
      if (dataset->skip_corrupt()) return false;
      throw Error(dataset->dir() + " split '" + dataset->split() + "' record " + std::to_string(index) + ": " +
                  e.what());
    }
    return true;
  };
}

}  // namespace unirep
