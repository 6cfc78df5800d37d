// The training configuration of `unirep train --config FILE [--set key=value ...]`: a YAML file of
// sections (model, data, augment, optimizer, schedule, train, ema, precision, checkpoint, logging,
// distributed), each a mapping of keys. experiments/README.md documents every key.
//
// Every key has a default except model.variant and data.path; the defaults are upstream main.py's
// (spec 6.2), so an experiment file lists only what its recipe changes. Unknown keys, wrong types,
// out-of-range values and inconsistent combinations are unirep::Error naming the file, line:col, the
// dotted key and what is allowed. Overrides ("optimizer.lr=1e-3", "optimizer.betas=[0.9,0.95]") are
// applied after the file with the same checks. to_yaml writes the resolved config (every key, schema
// order); parsing it gives back the same TrainConfig, so the run folder and every checkpoint carry
// an exact copy of what ran.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace unirep {

struct TrainConfig {
  struct Model {
    std::string variant;                             // a|f|p|n|t|s|b|l|xl (required)
    int64_t num_classes = 0;                         // head width; 0 = from the dataset's manifest
    int64_t in_chans = 0;                            // input channels; 0 = from the dataset
    double drop_path_rate = 0.0;                     // max stochastic-depth rate, in [0, 1)
    double layer_scale_init_value = 1e-6;            // initial per-block gamma; <= 0 = no layer scale
    double head_init_scale = 1.0;                    // head weight and bias scaled by this after init
    bool with_cp = false;                            // recompute each block in backward (saves memory)
    std::vector<std::vector<int64_t>> kernel_sizes;  // per stage, per block; empty = the variant's table
    std::string init;                                // "" = fresh init, else an HDF5 state dict to start from
    bool init_strict = true;                         // false: skip init entries whose shape differs (head)
    bool operator==(const Model&) const = default;
  };
  struct Data {
    std::string path;                                // dataset folder of shards (required)
    std::string train_split = "train";               // split trained on
    std::string eval_split = "val";                  // split evaluated on; "" = no evaluation
    int64_t input_size = 224;                        // training and evaluation image side, >= 16
    int64_t num_workers = 4;                         // decoding/augmentation threads per rank
    int64_t prefetch = 4;                            // batches prepared ahead
    bool skip_corrupt = false;                       // skip undecodable records instead of failing
    std::vector<double> mean = {0.485, 0.456, 0.406};  // normalisation mean per channel (1 or 3 values)
    std::vector<double> std = {0.229, 0.224, 0.225};   // normalisation std per channel (1 or 3 values)
    int64_t eval_batch_size = 0;                     // 0 = 1.5 x train.batch_size (upstream)
    bool operator==(const Data&) const = default;
  };
  struct Augment {
    std::string pipeline = "imagenet";               // imagenet|small|none (experiments/README.md)
    std::vector<double> scale = {0.08, 1.0};         // RandomResizedCrop area fraction [min, max]
    std::vector<double> ratio = {0.75, 1.3333333333333333};  // RandomResizedCrop aspect ratio [min, max]
    double hflip = 0.5;                              // horizontal flip probability
    std::string rand_augment = "rand-m9-mstd0.5-inc1";  // timm RandAugment string; "" = off
    double random_erasing = 0.25;                    // random erasing probability
    int64_t translate = 4;                           // "small": max random shift in pixels
    double crop_pct = 0.875;                         // evaluation: centre crop of a size/crop_pct resize
    double mixup = 0.8;                              // mixup Beta alpha; 0 = off
    double cutmix = 1.0;                             // cutmix Beta alpha; 0 = off
    double mixup_switch_prob = 0.5;                  // both on: probability of cutmix for a batch
    double mixup_prob = 1.0;                         // probability that a batch is mixed at all
    double label_smoothing = 0.1;                    // epsilon of the smoothed targets
    bool operator==(const Augment&) const = default;
  };
  struct Optimizer {
    std::string name = "adamw";                      // adamw|sgd
    double lr = 4e-3;                                // base (peak) learning rate
    std::vector<double> betas = {0.9, 0.999};        // AdamW beta1, beta2
    double eps = 1e-8;                               // AdamW epsilon
    double momentum = 0.9;                           // SGD momentum
    bool nesterov = false;                           // SGD Nesterov momentum
    double weight_decay = 0.05;                      // decoupled weight decay (biases and 1-D tensors get 0)
    double weight_decay_end = -1;                    // cosine target of the decay; -1 = weight_decay
    double layer_decay = 1.0;                        // layer-wise lr decay factor; 1 = off
    std::string layer_decay_rule = "classification";  // classification|downstream layer-id assignment
    int64_t layer_decay_num_layers = 12;             // layer ids 0..num_layers+1
    double clip_grad = 0;                            // max global gradient norm; 0 = off
    bool operator==(const Optimizer&) const = default;
  };
  struct Schedule {
    std::string name = "cosine";                     // cosine|step|poly|constant
    double warmup_epochs = 0;                        // linear warmup length in epochs
    int64_t warmup_steps = 0;                        // > 0: warmup length in optimizer steps (wins)
    double warmup_start = 0.0;                       // cosine: warmup start lr; step/poly: start ratio
    double min_lr = 1e-6;                            // final lr of cosine and poly
    std::vector<int64_t> milestones;                 // step: epochs at which lr is multiplied by gamma
    double gamma = 0.1;                              // step: lr factor per milestone
    double power = 1.0;                              // poly: exponent
    bool operator==(const Schedule&) const = default;
  };
  struct Train {
    int64_t epochs = 300;                            // passes over the training split
    int64_t max_steps = 0;                           // stop after this many optimizer steps; 0 = no cap
    int64_t batch_size = 128;                        // images per rank per micro-batch
    int64_t update_freq = 1;                         // micro-batches accumulated per optimizer step
    int64_t seed = 0;                                // base seed; rank r uses seed + r
    std::string device = "auto";                     // auto|cpu|cuda
    int64_t eval_every_epochs = 1;                   // evaluation period; 0 = only at the end
    int64_t threads = 0;                             // CPU compute threads; 0 = all cores
    std::string cuda_graph = "auto";                 // auto|off: replay the GPU step as a CUDA graph
    bool operator==(const Train&) const = default;
  };
  struct Ema {
    bool enabled = false;                            // keep an exponential moving average of the weights
    double decay = 0.9999;                           // ema = decay * ema + (1 - decay) * model, per step
    bool eval = false;                               // also evaluate (and checkpoint the best of) the EMA
    bool operator==(const Ema&) const = default;
  };
  struct Precision {
    std::string dtype = "float32";                   // float32|bfloat16|float16 autocast (float32 master weights)
    double loss_scale = 65536.0;                     // float16: initial dynamic loss scale
    int64_t loss_scale_growth_interval = 2000;       // float16: overflow-free steps before the scale doubles
    bool operator==(const Precision&) const = default;
  };
  struct Checkpoint {
    int64_t every_epochs = 1;                        // save every N epochs; 0 = never by epoch
    int64_t every_steps = 0;                         // save every N optimizer steps; 0 = never by step
    int64_t keep_last = 2;                           // periodic checkpoints kept
    bool keep_best = true;                           // also keep the best-evaluated checkpoint
    std::string resume;                              // "" = fresh, "auto" = latest in the run folder, or a path
    bool operator==(const Checkpoint&) const = default;
  };
  struct Logging {
    int64_t print_every_steps = 20;                  // log line period in optimizer steps
    bool jsonl = true;                               // also write metrics.jsonl in the run folder
    bool progress = true;                            // live progress line when stdout is a terminal
    bool operator==(const Logging&) const = default;
  };
  struct Distributed {
    std::string backend = "auto";                    // auto|none|nccl|mpi
    bool sync_bn = false;                            // BatchNorm statistics over all ranks
    int64_t bucket_mb = 25;                          // gradient all-reduce bucket size in MiB
    double timeout_s = 300;                          // a collective not done after this aborts every rank
    bool operator==(const Distributed&) const = default;
  };

  Model model;
  Data data;
  Augment augment;
  Optimizer optimizer;
  Schedule schedule;
  Train train;
  Ema ema;
  Precision precision;
  Checkpoint checkpoint;
  Logging logging;
  Distributed distributed;
  bool operator==(const TrainConfig&) const = default;
};

// Reads a YAML file, then applies the overrides ("section.key=value", value a YAML scalar or flow list).
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same on YAML text; source_name stands for the file in messages.
TrainConfig parse_train_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                               const std::string& source_name = "<string>");
// The resolved config: every key in schema order, parseable by parse_train_config.
std::string to_yaml(const TrainConfig& c);
// Every dotted key ("model.variant", ...) in schema order.
std::vector<std::string> train_config_keys();

}  // namespace unirep
