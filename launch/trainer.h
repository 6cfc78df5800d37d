// The training engine behind `unirep train` and `unirep eval`. One process per rank, each on one
// device (the CPU or one GPU); launched by mpirun or srun, the ranks train data-parallel
// (distributed/): rank r reads its share of every epoch, gradients are averaged by the bucketed
// reducer during backward, rank 0's initial state is broadcast, eval counts are summed exactly, and
// only rank 0 logs and writes the run folder.
//
// A run folder holds config.yaml (the resolved config), metrics.jsonl (launch/metrics.h),
// checkpoints/ (launch/checkpoint.h), model.h5 (the final weights as a plain state dict) and
// result.json (the final evaluation).
//
// One optimizer step = update_freq micro-batches: each micro-batch's loss is divided by update_freq
// and back-propagated (gradients accumulate); then the scheduled lr and weight decay
// (optim/schedule.h, per optimizer step) are applied, the gradients optionally clipped, the
// optimizer steps, the gradients are cleared and the EMA moves. With float16 the loss is scaled and a
// step whose gradients overflowed is skipped (optim/grad_scaler.h). BatchNorm statistics move every
// micro-batch, as upstream.
//
// On a GPU the step is replayed as a captured CUDA graph from the third step on when it can be
// (train.cuda_graph auto: one rank, update_freq 1, AdamW, no float16 loss scaling, no drop path):
// the same kernels on the same buffers, with the batch copied into the graph's input buffers and
// the optimizer's per-step values restaged before each replay. For small models, whose eager step
// is bound by the host's launch overhead, this is most of the speed (core/cuda/PERF.md).
//
// Determinism: with the same config, thread count and device, a run is a pure function of its seed:
// the sampler order (Philox), each sample's augmentation (its own stream per seed, epoch and index),
// mixup (its own stream per seed, epoch and batch), drop path (a Philox generator whose offset is
// checkpointed) and the CPU kernels (static work split) do not depend on timing. Checkpoints are
// written only between optimizer steps and hold every piece of that state, so a run resumed from a
// checkpoint continues exactly as the uninterrupted run would have (tests/launch/test_resume.cpp).
#pragma once
#include <string>

#include "launch/config.h"

namespace unirep {

struct EvalMetrics {
  double top1 = 0, top5 = 0, loss = 0;  // fractions; mean cross-entropy
  int64_t images = 0;
};

struct TrainResult {
  std::string run_dir;
  int64_t steps = 0, epochs_completed = 0;
  EvalMetrics final_eval, final_ema_eval;  // final_ema_eval.images == 0 without an EMA
  double seconds = 0, train_images_per_second = 0;
  bool already_complete = false;  // resumed a run that had finished: nothing was trained
  int rank = 0, world_size = 1;   // this process in the data-parallel job (rank 0 logs and writes)
  int stop_signal = 0;  // the signal that stopped the run at step `steps` after a checkpoint, or 0
  int64_t cuda_graph_steps = 0;  // steps of this process that were CUDA graph replays
};

// Trains per `config` in `run_dir` (created if needed). SIGTERM, SIGINT or SIGUSR1 stop it at the next
// optimizer step with a checkpoint (launch/stop_signals.h). resume: "" (start fresh; a run folder that
// already holds checkpoints is an error unless it is resumed), "auto" (the newest complete
// checkpoint of run_dir, or a fresh start when there is none) or a checkpoint path.
TrainResult train(const TrainConfig& config, const std::string& run_dir, const std::string& resume);

// Top-1/top-5 and loss of the weights in `checkpoint_path` (a checkpoint, or a plain state dict) on
// the config's eval split.
EvalMetrics evaluate_checkpoint(const TrainConfig& config, const std::string& checkpoint_path, bool use_ema);

}  // namespace unirep
