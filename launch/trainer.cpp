#include "launch/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include <omp.h>

#include "autograd/autocast.h"
#include "autograd/autocast_weight_cache.h"
#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/cuda/context.h"
#include "core/cuda/graph.h"
#include "core/device.h"
#include "core/error.h"
#include "core/hdf5_util.h"
#include "datasets/classification_pipeline.h"
#include "datasets/loader.h"
#include "datasets/mixup.h"
#include "datasets/rand_augment.h"
#include "datasets/random.h"
#include "distributed/process_group.h"
#include "distributed/reducer.h"
#include "distributed/sync_batch_norm.h"
#include "launch/checkpoint.h"
#include "launch/metrics.h"
#include "launch/stop_signals.h"
#include "layers/tensor_io.h"
#include "layers/unireplknet/model.h"
#include "optim/ema.h"
#include "optim/grad_scaler.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"

namespace unirep {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Salts that keep the run's random streams apart (all derive from train.seed).
constexpr uint64_t kMixupSalt = 0x6d69787570ull, kInitSalt = 0x696e6974ull, kDropPathSalt = 0x64726f70ull;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Device resolve_device(const std::string& name) {
  if (name == "cuda") {
    UNIREP_CHECK(cuda_available(), "train.device is cuda but no CUDA GPU is available");
    return Device::cuda();
  }
  if (name == "cpu") return Device::cpu();
  return cuda_available() ? Device::cuda() : Device::cpu();
}

// What the data and the model need to agree on, resolved from the config and the dataset's manifest.
struct DataSetup {
  std::shared_ptr<const ShardedDataset> train, eval;
  int64_t num_classes = 0, in_chans = 0;
  ClassificationPipeline pipeline;
};

std::shared_ptr<const ShardedDataset> open_split(const TrainConfig& c, const std::string& split) {
  const Manifest manifest = Manifest::load(c.data.path);
  UNIREP_CHECK(manifest.kind == DatasetKind::Classification, "data.path '", c.data.path, "' holds a ",
               kind_name(manifest.kind), " dataset; training needs a classification dataset");
  if (!manifest.splits.count(split)) {
    std::string available;
    for (auto& [name, info] : manifest.splits) available += (available.empty() ? "" : ", ") + name;
    throw Error("data.path '" + c.data.path + "' has no split '" + split + "' (it has: " + available + ")");
  }
  return std::make_shared<const ShardedDataset>(c.data.path, split, false, c.data.skip_corrupt);
}

DataSetup setup_data(const TrainConfig& c, bool need_train) {
  DataSetup d;
  if (need_train) d.train = open_split(c, c.data.train_split);
  if (!c.data.eval_split.empty()) d.eval = open_split(c, c.data.eval_split);
  const ShardedDataset& any = d.train ? *d.train : *d.eval;
  const int64_t dataset_classes = any.num_classes();
  d.num_classes = c.model.num_classes > 0 ? c.model.num_classes : dataset_classes;
  UNIREP_CHECK(d.num_classes >= dataset_classes, "model.num_classes is ", d.num_classes, " but the dataset '",
               c.data.path, "' has ", dataset_classes, " classes");
  const int64_t dataset_channels = any.encoded() ? 3 : any.manifest().channels;
  d.in_chans = c.model.in_chans > 0 ? c.model.in_chans : dataset_channels;
  UNIREP_CHECK(d.in_chans == 1 || d.in_chans == 3, "model.in_chans must be 1 or 3 for image data, got ", d.in_chans);
  UNIREP_CHECK(c.data.mean.size() == c.data.std.size(), "data.mean has ", c.data.mean.size(),
               " values but data.std has ", c.data.std.size());
  UNIREP_CHECK(c.data.mean.size() == 1 || int64_t(c.data.mean.size()) == d.in_chans, "data.mean/data.std have ",
               c.data.mean.size(), " values; expected 1 or in_chans = ", d.in_chans);

  ClassificationPipeline& p = d.pipeline;
  p.kind = parse_pipeline_kind(c.augment.pipeline);
  p.size = c.data.input_size;
  p.channels = d.in_chans;
  for (int64_t ch = 0; ch < 3; ++ch) {
    const size_t i = c.data.mean.size() == 1 ? 0 : size_t(std::min<int64_t>(ch, int64_t(c.data.mean.size()) - 1));
    p.norm.mean[ch] = float(c.data.mean[i]);
    p.norm.std[ch] = float(c.data.std[i]);
  }
  p.imagenet.crop.scale_min = c.augment.scale[0];
  p.imagenet.crop.scale_max = c.augment.scale[1];
  p.imagenet.crop.ratio_min = c.augment.ratio[0];
  p.imagenet.crop.ratio_max = c.augment.ratio[1];
  p.imagenet.hflip_prob = c.augment.hflip;
  p.imagenet.use_rand_augment = !c.augment.rand_augment.empty();
  if (p.imagenet.use_rand_augment) p.imagenet.rand_augment = parse_rand_augment(c.augment.rand_augment);
  p.imagenet.erasing.probability = c.augment.random_erasing;
  p.crop_pct = c.augment.crop_pct;
  p.translate = c.augment.translate;
  p.hflip = c.augment.hflip;
  return d;
}

UniRepLKNetConfig model_config(const TrainConfig& c, const DataSetup& d) {
  UniRepLKNetConfig m = unireplknet_variant(c.model.variant);
  m.num_classes = d.num_classes;
  m.in_chans = d.in_chans;
  m.drop_path_rate = c.model.drop_path_rate;
  m.layer_scale_init_value = c.model.layer_scale_init_value;
  m.head_init_scale = c.model.head_init_scale;
  m.with_cp = c.model.with_cp;
  if (!c.model.kernel_sizes.empty()) m.kernel_sizes = c.model.kernel_sizes;
  return m;
}

int64_t eval_batch_size(const TrainConfig& c) {
  return c.data.eval_batch_size > 0 ? c.data.eval_batch_size : std::max<int64_t>(1, c.train.batch_size * 3 / 2);
}

LoaderOptions loader_options(const TrainConfig& c, const DataSetup& d, int64_t batch, Device device) {
  LoaderOptions o;
  o.batch_size = batch;
  o.height = o.width = c.data.input_size;
  o.channels = d.in_chans;
  o.num_workers = int(c.data.num_workers);
  o.prefetch = int(c.data.prefetch);
  o.device = device;
  return o;
}

// Low precision runs on the GPU only; the CPU trains in float32 whatever the config says.
std::optional<DType> autocast_dtype_for(const TrainConfig& c, Device device) {
  if (!device.is_cuda() || c.precision.dtype == "float32") return std::nullopt;
  return c.precision.dtype == "bfloat16" ? DType::BFloat16 : DType::Float16;
}

// No eval split (data.eval_split ""): zero images, zero metrics. With several ranks each evaluates
// its share (rank r: global positions r, r + W, ...) and skips the sampler's wrap-around padding
// (global positions >= N), so the summed counts are exactly those of one pass over the split.
EvalMetrics evaluate(UniRepLKNet& model, const TrainConfig& c, const DataSetup& d, Device device,
                     std::optional<DType> low_precision, Communicator& comm) {
  if (!d.eval) return {};
  const bool was_training = model.training();
  model.eval();
  LoaderOptions o = loader_options(c, d, eval_batch_size(c), device);
  const int64_t n = d.eval->size(), rank = comm.rank(), world = comm.size();
  DistributedSampler sampler(n, comm.rank(), comm.size(), c.train.seed, /*shuffle=*/false, /*drop_last=*/false);
  DataLoader loader(sampler, o, make_classification_fetch(d.eval, d.pipeline, false, c.train.seed, d.num_classes));
  NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t top1 = 0, top5 = 0, images = 0;
  // The parameters do not change while evaluating: one cast of them serves every batch.
  AutocastGuard autocast(low_precision.value_or(DType::Float32), low_precision.has_value());
  AutocastWeightCache weights(model.parameters());
  while (const Batch* batch = loader.next()) {
    Tensor x = batch->images.slice(0, 0, batch->size), y = batch->labels.slice(0, 0, batch->size);
    const Tensor logits = cast(model.forward(x), DType::Float32);
    const std::vector<float> l = logits.to_vector<float>();
    const std::vector<int64_t> labels = y.to_vector<int64_t>();
    const int64_t k = logits.size(1);
    const std::vector<float> row_losses =
        cross_entropy(logits, y, -100, 0.0, Reduction::None).to_vector<float>();
    for (int64_t i = 0; i < batch->size; ++i) {
      if ((batch->position + i) * world + rank >= n) continue;  // padding: counted by the rank that owns it
      loss_sum += double(row_losses[size_t(i)]);
      const float* row = &l[size_t(i * k)];
      const float target = row[labels[size_t(i)]];
      // Rank of the target: classes scoring higher, ties broken toward the lower index (as topk).
      int64_t place = 0;
      for (int64_t j = 0; j < k; ++j) place += row[j] > target || (row[j] == target && j < labels[size_t(i)]);
      top1 += place < 1;
      top5 += place < 5;
      ++images;
    }
  }
  if (world > 1) {
    const std::vector<int64_t> counts = all_reduce_sum(comm, std::vector<int64_t>{top1, top5, images});
    top1 = counts[0], top5 = counts[1], images = counts[2];
    loss_sum = all_reduce_sum(comm, std::vector<double>{loss_sum})[0];
  }
  model.train(was_training);
  EvalMetrics m;
  m.images = images;
  if (images > 0) m.top1 = double(top1) / double(images), m.top5 = double(top5) / double(images), m.loss = loss_sum / double(images);
  return m;
}

json metrics_json(const EvalMetrics& m) {
  return {{"top1", m.top1}, {"top5", m.top5}, {"loss", m.loss}, {"images", m.images}};
}

}  // namespace

TrainResult train(const TrainConfig& c, const std::string& run_dir, const std::string& resume_arg) {
  const auto start = std::chrono::steady_clock::now();
  if (c.train.threads > 0) omp_set_num_threads(int(c.train.threads));
  // One process per rank: the communicator picks this rank's device (its GPU by local rank).
  std::unique_ptr<Communicator> comm =
      make_communicator(c.distributed.backend, resolve_device(c.train.device), c.distributed.timeout_s);
  const Device device = comm->device();
  const int rank = comm->rank(), world = comm->size();
  const bool is_main = rank == 0;  // logs and writes; every rank computes
  const std::optional<DType> low_precision = autocast_dtype_for(c, device);
  if (is_main && !device.is_cuda() && c.precision.dtype != "float32")
    std::printf("note: precision.dtype %s applies on the GPU; the CPU trains in float32\n", c.precision.dtype.c_str());

  // Resume target first: a fresh start never overwrites an existing run.
  fs::create_directories(checkpoint_dir(run_dir));
  std::string resume_path;
  if (resume_arg == "auto") {
    resume_path = latest_checkpoint(run_dir);
  } else if (!resume_arg.empty()) {
    resume_path = resume_arg;
  } else if (!latest_checkpoint(run_dir).empty()) {
    throw Error("run folder '" + run_dir + "' already holds checkpoints (newest: " + latest_checkpoint(run_dir) +
                "); pass --resume auto to continue that run, or choose another --out");
  }
  const std::string resolved_yaml = to_yaml(c);
  if (is_main) write_file_atomically((fs::path(run_dir) / "config.yaml").string(), resolved_yaml, "unirep train: ");

  DataSetup data = setup_data(c, true);
  UniRepLKNetConfig mc = model_config(c, data);
  auto model = std::make_shared<UniRepLKNet>(mc);
  {
    Generator init_gen(c.train.seed ^ kInitSalt);
    model->init_weights(init_gen);
  }
  if (!c.model.init.empty()) {
    LoadReport report = model->load_state_dict(read_model_weights(c.model.init), c.model.init_strict);
    if (!report.ok()) std::printf("model.init '%s': %s\n", c.model.init.c_str(), report.str().c_str());
  }
  // Each rank its own drop-path stream (upstream seeds every rank with seed + rank).
  Generator drop_path_gen((c.train.seed ^ kDropPathSalt) + uint64_t(rank));
  model->set_generator(&drop_path_gen);
  model->to(device);
  model->train();
  if (world > 1) {
    broadcast_module_state(*comm, *model);
    if (c.distributed.sync_bn) convert_sync_batch_norm(*model, comm.get());
  }

  std::shared_ptr<UniRepLKNet> ema_model;
  std::unique_ptr<ModelEma> ema;
  if (c.ema.enabled) {
    ema_model = std::make_shared<UniRepLKNet>(mc);
    ema_model->to(device);
    ema_model->eval();
    ema = std::make_unique<ModelEma>(*ema_model, c.ema.decay);
    ema->reset(*model);
  }

  ParamGroupOptions group_options;
  group_options.weight_decay = c.optimizer.weight_decay;
  group_options.layer_decay = c.optimizer.layer_decay;
  group_options.rule = c.optimizer.layer_decay_rule == "downstream" ? LayerDecayRule::Downstream
                                                                   : LayerDecayRule::Classification;
  group_options.num_layers = c.optimizer.layer_decay_num_layers;
  std::vector<ParamGroup> groups = make_param_groups(model->named_parameters(), group_options);
  std::unique_ptr<Optimizer> optimizer;
  if (c.optimizer.name == "sgd") {
    optimizer = std::make_unique<SGD>(groups, c.optimizer.momentum, 0.0, c.optimizer.nesterov);
  } else {
    optimizer = std::make_unique<AdamW>(groups, c.optimizer.betas[0], c.optimizer.betas[1], c.optimizer.eps);
  }
  GradScaler::Options scaler_options;
  scaler_options.enabled = low_precision == DType::Float16;
  scaler_options.init_scale = c.precision.loss_scale;
  scaler_options.growth_interval = c.precision.loss_scale_growth_interval;
  GradScaler scaler(scaler_options);

  // Loader: every rank's batches of one epoch; an optimizer step takes update_freq of them.
  LoaderOptions train_options = loader_options(c, data, c.train.batch_size, device);
  train_options.drop_last = true;
  const bool mixing = c.augment.mixup > 0 || c.augment.cutmix > 0;
  if (mixing) train_options.num_classes = data.num_classes;
  BatchFn mix_batch;
  if (mixing) {
    MixupConfig mix;
    mix.mixup_alpha = c.augment.mixup;
    mix.cutmix_alpha = c.augment.cutmix;
    mix.prob = c.augment.mixup_prob;
    mix.switch_prob = c.augment.mixup_switch_prob;
    mix.label_smoothing = c.augment.label_smoothing;
    mix.num_classes = data.num_classes;
    const uint64_t seed = (c.train.seed ^ kMixupSalt) + uint64_t(rank);
    const int64_t size = c.data.input_size, channels = data.in_chans;
    mix_batch = [mix, seed, size, channels](Batch& b) {
      Rng rng = make_rng(seed, uint64_t(b.epoch), uint64_t(b.batch_index));
      mixup_cutmix(b.image(0), b.size, size, size, channels, true, b.label(0), b.soft_target(0), mix, rng);
    };
  }
  DistributedSampler sampler(data.train->size(), rank, world, c.train.seed, /*shuffle=*/true, /*drop_last=*/true);
  DataLoader loader(sampler, train_options,
                    make_classification_fetch(data.train, data.pipeline, true, c.train.seed, data.num_classes),
                    mix_batch);
  const int64_t steps_per_epoch = loader.num_batches() / c.train.update_freq;
  UNIREP_CHECK(steps_per_epoch > 0, "the train split has ", data.train->size(), " images: fewer than one optimizer step (",
               "train.batch_size ", c.train.batch_size, " x train.update_freq ", c.train.update_freq, ")");
  const int64_t schedule_steps = c.train.epochs * steps_per_epoch;
  const int64_t total_steps = c.train.max_steps > 0 ? std::min(c.train.max_steps, schedule_steps) : schedule_steps;

  ScheduleOptions lr_options;
  lr_options.kind = c.schedule.name == "step"       ? ScheduleOptions::Kind::Step
                    : c.schedule.name == "poly"     ? ScheduleOptions::Kind::Poly
                    : c.schedule.name == "constant" ? ScheduleOptions::Kind::Constant
                                                    : ScheduleOptions::Kind::Cosine;
  lr_options.base = c.optimizer.lr;
  lr_options.final_value = c.schedule.min_lr;
  lr_options.total_steps = schedule_steps;
  lr_options.warmup_steps = c.schedule.warmup_steps > 0
                                ? c.schedule.warmup_steps
                                : int64_t(std::llround(c.schedule.warmup_epochs * double(steps_per_epoch)));
  lr_options.warmup_start = c.schedule.warmup_start;
  for (int64_t epoch : c.schedule.milestones) lr_options.milestones.push_back(epoch * steps_per_epoch);
  lr_options.gamma = c.schedule.gamma;
  lr_options.power = c.schedule.power;
  const Schedule lr_schedule(lr_options);
  ScheduleOptions wd_options;
  wd_options.kind = ScheduleOptions::Kind::Cosine;
  wd_options.base = c.optimizer.weight_decay;
  wd_options.final_value = c.optimizer.weight_decay_end >= 0 ? c.optimizer.weight_decay_end : c.optimizer.weight_decay;
  wd_options.total_steps = schedule_steps;
  const Schedule wd_schedule(wd_options);

  // State that a checkpoint carries.
  int64_t step = 0, epoch = 0;
  bool epoch_complete = false;
  double best_top1 = -1;
  int64_t best_step = -1;
  MetricsLog metrics((fs::path(run_dir) / "metrics.jsonl").string(), c.logging.jsonl && is_main);
  // The loss log's running sums (a checkpoint between two log lines keeps them, so a resumed run logs
  // the same numbers). window_loss adds micro-batch losses on the device: no host sync per step.
  Tensor window_loss;
  int64_t window_steps = 0;
  double epoch_loss_sum = 0;
  int64_t epoch_loss_steps = 0;

  auto make_checkpoint = [&]() {
    Checkpoint ck;
    add_section(ck.tensors, "model", model->state_dict());
    if (ema_model) add_section(ck.tensors, "ema", ema_model->state_dict());
    add_section(ck.tensors, "optimizer", optimizer->state_dict());
    if (scaler.enabled()) add_section(ck.tensors, "scaler", scaler.state_dict());
    const SamplerState s = loader.state();
    ck.state = {{"step", step},
                {"epoch", epoch},
                {"epoch_complete", epoch_complete},
                {"sampler",
                 {{"seed", s.seed}, {"epoch", s.epoch}, {"consumed", s.consumed}, {"dataset_size", s.dataset_size},
                  {"world_size", s.world_size}}},
                {"generator", {{"seed", drop_path_gen.seed()}, {"offset", drop_path_gen.offset()}}},
                {"best_top1", best_top1},
                {"best_step", best_step},
                {"log", {{"window_loss", window_loss.defined() ? window_loss.item() : 0.0}, {"window_steps", window_steps},
                         {"epoch_loss_sum", epoch_loss_sum}, {"epoch_loss_steps", epoch_loss_steps}}}};
    ck.config_yaml = resolved_yaml;
    return ck;
  };
  int64_t checkpointed_step = -1;  // the step of the newest step checkpoint this run wrote
  auto save_step_checkpoint = [&]() {
    checkpointed_step = step;
    if (!is_main) return;
    write_checkpoint(step_checkpoint_path(run_dir, step), make_checkpoint());
    prune_checkpoints(run_dir, c.checkpoint.keep_last);
  };

  if (!resume_path.empty()) {
    Checkpoint ck = read_checkpoint(resume_path);
    if (is_main && ck.config_yaml != resolved_yaml)
      std::printf("note: the config differs from the one '%s' was written with; continuing with the new one\n",
                  resume_path.c_str());
    model->load_state_dict(section(ck.tensors, "model"));
    if (ema_model) {
      NamedTensors ema_state = section(ck.tensors, "ema");
      if (ema_state.empty()) {
        if (is_main) std::printf("note: '%s' has no EMA weights; the EMA restarts from the current weights\n", resume_path.c_str());
        ema->reset(*model);
      } else {
        ema_model->load_state_dict(ema_state);
      }
    }
    optimizer->load_state_dict(section(ck.tensors, "optimizer"));
    if (scaler.enabled()) scaler.load_state_dict(section(ck.tensors, "scaler"));
    const json& st = ck.state;
    step = st.at("step").get<int64_t>();
    epoch = st.at("epoch").get<int64_t>();
    epoch_complete = st.at("epoch_complete").get<bool>();
    best_top1 = st.at("best_top1").get<double>();
    best_step = st.at("best_step").get<int64_t>();
    const json& log = st.at("log");
    window_steps = log.at("window_steps").get<int64_t>();
    if (window_steps > 0)
      window_loss = Tensor::full({}, log.at("window_loss").get<double>(), DType::Float32, device);
    epoch_loss_sum = log.at("epoch_loss_sum").get<double>();
    epoch_loss_steps = log.at("epoch_loss_steps").get<int64_t>();
    // Every rank draws as many masks: rank 0's offset is every rank's.
    drop_path_gen.set_state(drop_path_gen.seed(), st.at("generator").at("offset").get<uint64_t>());
    SamplerState s;
    const json& js = st.at("sampler");
    s.seed = js.at("seed").get<uint64_t>();
    s.epoch = js.at("epoch").get<int64_t>();
    s.consumed = js.at("consumed").get<int64_t>();
    s.dataset_size = js.at("dataset_size").get<int64_t>();
    s.world_size = js.at("world_size").get<int64_t>();
    if (epoch_complete) {
      ++epoch;
      epoch_complete = false;
    } else {
      loader.restore(s);
    }
    metrics.truncate_after_step(step);
    if (is_main) std::printf("resumed from %s: step %lld, epoch %lld\n", resume_path.c_str(), (long long)step, (long long)epoch);
  }

  if (resume_path.empty()) metrics.truncate_after_step(-1);  // records of an attempt that left no checkpoint

  TrainResult result;
  result.run_dir = run_dir;
  if (step >= total_steps) {
    result.already_complete = true;
  } else if (is_main) {
    std::printf("training UniRepLKNet-%s (%lld parameters, %lld classes, %lldx%lld x%lld input) on %s%s%s: %lld steps "
                "(%lld per epoch, batch %lld x update_freq %lld), run folder %s\n",
                mc.name.c_str(), (long long)model->num_parameters(), (long long)data.num_classes,
                (long long)c.data.input_size, (long long)c.data.input_size, (long long)data.in_chans,
                world > 1 ? (std::to_string(world) + " ranks (" + comm->backend() + "), rank 0 ").c_str() : "",
                device.str().c_str(), low_precision ? (" with " + c.precision.dtype + " autocast").c_str() : "",
                (long long)total_steps, (long long)steps_per_epoch, (long long)c.train.batch_size,
                (long long)c.train.update_freq, run_dir.c_str());
  }
  std::fflush(stdout);

  const std::vector<Tensor> params = model->parameters();
  // MPI or NCCL (any world size, 1 included): gradients live in buckets that are all-reduced
  // (averaged) while backward runs. A plain run ("single") needs none.
  std::unique_ptr<GradientReducer> reducer;
  if (comm->backend() != "single")
    reducer = std::make_unique<GradientReducer>(*comm, params, c.distributed.bucket_mb << 20);
  ProgressLine progress(c.logging.progress && is_main && ::isatty(STDOUT_FILENO), total_steps);
  auto window_start = std::chrono::steady_clock::now();
  const auto train_start = window_start;
  int64_t window_images = 0, trained_images = 0;
  const int64_t steps_at_start = step;
  StopSignals stop_signals;
  int stop_signal = 0;
  EvalMetrics last_eval, last_ema_eval;

  auto run_eval = [&](bool final) {
    if (!data.eval) return;
    last_eval = evaluate(*model, c, data, device, low_precision, *comm);
    if (ema_model && c.ema.eval) last_ema_eval = evaluate(*ema_model, c, data, device, low_precision, *comm);
    json record = {{"kind", "epoch"}, {"epoch", epoch}, {"step", step}, {"top1", last_eval.top1},
                   {"top5", last_eval.top5}, {"eval_loss", last_eval.loss}, {"time", seconds_since(start)}};
    if (epoch_loss_steps > 0) record["train_loss"] = epoch_loss_sum / double(epoch_loss_steps);
    if (last_ema_eval.images > 0) record["ema_top1"] = last_ema_eval.top1, record["ema_top5"] = last_ema_eval.top5;
    if (final) record["final"] = true;
    metrics.write(record);
    progress.finish();
    if (is_main) {
      std::printf("epoch %lld  step %lld  eval top-1 %.4f  top-5 %.4f  loss %.4f", (long long)epoch, (long long)step,
                  last_eval.top1, last_eval.top5, last_eval.loss);
      if (last_ema_eval.images > 0) std::printf("  (EMA top-1 %.4f  top-5 %.4f)", last_ema_eval.top1, last_ema_eval.top5);
      std::printf("\n");
      std::fflush(stdout);
    }
    if (last_eval.top1 > best_top1) {
      best_top1 = last_eval.top1;
      best_step = step;
      if (c.checkpoint.keep_best && is_main) write_checkpoint(best_checkpoint_path(run_dir), make_checkpoint());
    }
  };

  // The step as a CUDA graph (train.cuda_graph auto; core/cuda/graph.h): once this process has run
  // kStepsBeforeCapture steps eagerly (lazy state, cuDNN plans and the allocator's cache are then in
  // place), one step is captured reading its batch from fixed buffers; from then on every step
  // copies its batch there, restages the optimizer's step values (lr, weight decay, bias
  // corrections) and replays. graph_blocker says why this run trains eagerly instead.
  constexpr int64_t kStepsBeforeCapture = 2;
  std::string graph_blocker;
  if (c.train.cuda_graph == "off") graph_blocker = "train.cuda_graph is off";
  else if (!device.is_cuda()) graph_blocker = "not on a GPU";
  else if (reducer) graph_blocker = "a distributed run (the gradient all-reduce is not captured)";
  else if (c.train.update_freq > 1) graph_blocker = "train.update_freq > 1";
  else if (scaler.enabled()) graph_blocker = "float16 loss scaling (an overflowing step is skipped on the host)";
  else if (!optimizer->replayable())
    graph_blocker = "optimizer " + c.optimizer.name + " takes its step values as kernel arguments";
  else if (c.model.drop_path_rate > 0) graph_blocker = "drop path draws new random numbers every step";
  auto note_eager = [&] {
    if (is_main) std::printf("note: the training step is not replayed as a CUDA graph (%s); training eagerly\n",
                             graph_blocker.c_str());
  };
  if (device.is_cuda() && c.train.cuda_graph == "auto" && !graph_blocker.empty()) note_eager();
  std::unique_ptr<cuda::Graph> step_graph;
  Tensor graph_images, graph_labels, graph_soft, graph_loss;  // the captured step's inputs and loss
  int64_t eager_steps = 0;

  // Forward, backward and the optimizer step on one micro-batch's images and targets: the eager
  // step's body, and the captured step's.
  auto forward_backward = [&](const Tensor& images, const Tensor& labels, const Tensor& soft_targets, bool sync) {
    Tensor loss;
    {
      AutocastGuard autocast(low_precision.value_or(DType::Float32), low_precision.has_value());
      AutocastWeightCache weights(params);  // the forward's parameter casts in a few launches
      Tensor logits = cast(model->forward(images), DType::Float32);
      loss = mixing ? cross_entropy_soft(logits, soft_targets)
                    : cross_entropy(logits, labels, -100, c.augment.label_smoothing);
    }
    Tensor backward_loss = c.train.update_freq > 1 ? loss * (1.0 / double(c.train.update_freq)) : loss;
    if (reducer) reducer->prepare_for_backward(sync);
    scaler.scale(backward_loss).backward();
    return loss.detach();
  };
  auto optimizer_step = [&](double lr, double wd) {
    const bool overflow = scaler.enabled() && scaler.unscale_and_check(params);
    if (c.optimizer.clip_grad > 0 && !overflow) clip_grad_norm(params, c.optimizer.clip_grad);
    if (!overflow) optimizer->step(lr, wd);
    if (scaler.enabled()) scaler.update(overflow);
    optimizer->zero_grad();
    if (ema) ema->update(*model);
  };
  // Captures the step of this batch (the buffers filled already); on failure leaves the host state as
  // it was (nothing ran on the device) and returns the reason.
  auto capture_step = [&](double lr, double wd) -> std::string {
    const int64_t optimizer_steps = optimizer->steps();
    const uint64_t rng_offset = drop_path_gen.offset();
    // The graph's blocks come from its own pool: the eager steps' cached blocks would only double the
    // memory the process holds.
    cuda_empty_cache(device.index);
    auto graph = std::make_unique<cuda::Graph>(device.index);
    try {
      graph->capture([&] {
        graph_loss = forward_backward(graph_images, graph_labels, graph_soft, true);
        optimizer_step(lr, wd);
      });
      UNIREP_CHECK(drop_path_gen.offset() == rng_offset, "the step draws random numbers");
    } catch (const std::exception& e) {
      graph_loss = Tensor();
      optimizer->zero_grad();
      optimizer->rewind_steps(optimizer_steps);
      drop_path_gen.set_state(drop_path_gen.seed(), rng_offset);
      return e.what();
    }
    step_graph = std::move(graph);
    return "";
  };

  // The bookkeeping after an optimizer step; true when a stop signal ends the run here.
  auto finish_step = [&](double lr) {
    ++step;
    ++window_steps;
    if (step % c.logging.print_every_steps == 0 || step == total_steps) {
      double mean_loss = window_loss.item() / double(window_steps * c.train.update_freq);
      if (world > 1) mean_loss = all_reduce_sum(*comm, std::vector<double>{mean_loss})[0] / double(world);
      const double window_seconds = seconds_since(window_start);
      const double img_per_s = double(window_images) * double(world) / std::max(window_seconds, 1e-9);
      const double elapsed = seconds_since(train_start);
      const double eta = double(total_steps - step) * elapsed / double(std::max<int64_t>(step - steps_at_start, 1));
      epoch_loss_sum += mean_loss * double(window_steps), epoch_loss_steps += window_steps;
      metrics.write({{"kind", "step"}, {"epoch", epoch}, {"step", step}, {"loss", mean_loss}, {"lr", lr},
                     {"img_per_s", img_per_s}, {"time", seconds_since(start)}});
      if (is_main) progress.update(epoch, c.train.epochs, step, mean_loss, lr, img_per_s, eta);
      window_loss = Tensor();
      window_images = 0, window_steps = 0;
      window_start = std::chrono::steady_clock::now();
    }
    if (c.checkpoint.every_steps > 0 && step % c.checkpoint.every_steps == 0 && step < total_steps)
      save_step_checkpoint();
    // At the last step a signal changes nothing: the run ends anyway (on every rank alike).
    if (step < total_steps) stop_signal = int(comm->max_over_ranks(stop_signals.received()));
    return stop_signal != 0;
  };

  for (; step < total_steps; ++epoch) {
    if (loader.epoch() != epoch || loader.state().consumed == 0) {
      loader.set_epoch(epoch);
      epoch_loss_sum = 0, epoch_loss_steps = 0;
    }
    const int64_t micro_batches = steps_per_epoch * c.train.update_freq;
    int64_t micro = loader.state().consumed / c.train.batch_size;
    while (micro < micro_batches && step < total_steps) {
      const Batch* batch = loader.next();
      UNIREP_CHECK(batch != nullptr, "the train loader ended its epoch early (", micro, " of ", micro_batches, " batches)");
      window_images += batch->size;
      trained_images += batch->size;
      ++micro;
      if (graph_blocker.empty() && eager_steps >= kStepsBeforeCapture && batch->size == c.train.batch_size) {
        const double lr = lr_schedule.at(step), wd = wd_schedule.at(step);
        if (!step_graph) {
          graph_images = Tensor::empty(batch->images.shape(), batch->images.dtype(), device);
          graph_labels = Tensor::empty(batch->labels.shape(), batch->labels.dtype(), device);
          if (mixing) graph_soft = Tensor::empty(batch->soft_targets.shape(), batch->soft_targets.dtype(), device);
        }
        graph_images.copy_(batch->images);
        graph_labels.copy_(batch->labels);
        if (mixing) graph_soft.copy_(batch->soft_targets);
        if (!step_graph) {
          graph_blocker = capture_step(lr, wd);  // counts and stages this step's optimizer values
          if (!graph_blocker.empty()) note_eager();
        } else {
          optimizer->restage(lr, wd);
        }
        if (step_graph) {
          step_graph->replay();
          ++result.cuda_graph_steps;
          window_loss = window_loss.defined() ? window_loss + graph_loss : graph_loss.clone();
          if (finish_step(lr)) break;
          continue;
        }
      }
      const bool boundary = micro % c.train.update_freq == 0;
      const Tensor loss = forward_backward(batch->images, batch->labels, batch->soft_targets, boundary);
      window_loss = window_loss.defined() ? window_loss + loss : loss;
      if (!boundary) continue;
      if (reducer) reducer->finish();
      const double lr = lr_schedule.at(step), wd = wd_schedule.at(step);
      optimizer_step(lr, wd);
      ++eager_steps;
      if (finish_step(lr)) break;
    }
    if (stop_signal != 0) break;
    if (micro < micro_batches) break;  // max_steps reached mid-epoch
    epoch_complete = true;
    if (step >= total_steps) break;  // the final eval and checkpoint follow
    if (c.train.eval_every_epochs > 0 && (epoch + 1) % c.train.eval_every_epochs == 0) run_eval(false);
    if (c.checkpoint.every_epochs > 0 && (epoch + 1) % c.checkpoint.every_epochs == 0) save_step_checkpoint();
    epoch_complete = false;
  }
  progress.finish();
  const double train_seconds = seconds_since(train_start);
  result.rank = rank;
  result.world_size = world;

  if (stop_signal != 0) {
    if (checkpointed_step != step) save_step_checkpoint();  // unless the periodic one was of this step
    comm->barrier();  // no rank exits (srun --kill-on-bad-exit) before rank 0's checkpoint is on disk
    if (is_main) {
      std::printf("%s received: stopping at step %lld of %lld; checkpoint %s written, continue with --resume auto\n",
                  signal_name(stop_signal).c_str(), (long long)step, (long long)total_steps,
                  step_checkpoint_path(run_dir, step).c_str());
      std::fflush(stdout);
    }
    result.steps = step;
    result.stop_signal = stop_signal;
    result.seconds = seconds_since(start);
    return result;
  }

  if (!result.already_complete) {
    run_eval(true);
    save_step_checkpoint();
  } else {
    last_eval = evaluate(*model, c, data, device, low_precision, *comm);
    if (ema_model && c.ema.eval) last_ema_eval = evaluate(*ema_model, c, data, device, low_precision, *comm);
  }
  if (is_main) {
    save_tensors((fs::path(run_dir) / "model.h5").string(), model->state_dict(),
                 {{"format", "unirep-state-dict"}, {"version", "1"}, {"model", mc.name}});
    if (ema_model) save_tensors((fs::path(run_dir) / "model_ema.h5").string(), ema_model->state_dict(),
                                {{"format", "unirep-state-dict"}, {"version", "1"}, {"model", mc.name}});
  }

  result.steps = step;
  result.epochs_completed = epoch_complete ? epoch + 1 : epoch;
  result.final_eval = last_eval;
  result.final_ema_eval = last_ema_eval;
  result.seconds = seconds_since(start);
  result.train_images_per_second = train_seconds > 0 ? double(trained_images) * double(world) / train_seconds : 0;
  json summary = {{"steps", result.steps}, {"epochs", result.epochs_completed}, {"eval", metrics_json(last_eval)},
                  {"seconds", result.seconds}, {"train_images_per_second", result.train_images_per_second},
                  {"device", device.str()}, {"world_size", world}, {"best_top1", best_top1}, {"best_step", best_step},
                  {"cuda_graph_steps", result.cuda_graph_steps}};
  if (last_ema_eval.images > 0) summary["ema_eval"] = metrics_json(last_ema_eval);
  if (is_main) write_file_atomically((fs::path(run_dir) / "result.json").string(), summary.dump(2) + "\n", "unirep train: ");
  return result;
}

EvalMetrics evaluate_checkpoint(const TrainConfig& c, const std::string& checkpoint_path, bool use_ema) {
  if (c.train.threads > 0) omp_set_num_threads(int(c.train.threads));
  UNIREP_CHECK(!c.data.eval_split.empty(), "data.eval_split is empty: there is no split to evaluate on");
  const Device device = resolve_device(c.train.device);
  DataSetup data = setup_data(c, false);
  auto model = std::make_shared<UniRepLKNet>(model_config(c, data));
  model->load_state_dict(read_model_weights(checkpoint_path, use_ema));
  model->to(device);
  SingleCommunicator single(device);
  return evaluate(*model, c, data, device, autocast_dtype_for(c, device), single);
}

}  // namespace unirep
