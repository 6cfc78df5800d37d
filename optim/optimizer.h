// Optimizers over parameter groups (optim/param_groups.h): AdamW and SGD exactly as torch.optim, and
// global-norm gradient clipping as torch.nn.utils.clip_grad_norm_.
//
// A step gives group g the learning rate lr * lr_scale(g) and the weight decay passed to step() if
// the group decays (weight_decay > 0), else 0; step(lr) uses each group's own weight_decay instead.
// Parameters whose grad is undefined are skipped. Updates are fused kernels (optim/optimizer_kernels.h)
// on the parameters' device: AdamW updates the CUDA parameters of a step in a few multi-tensor
// launches (bitwise the per-tensor result), CPU parameters and SGD one parameter at a time; nothing
// synchronises with the host.
//
// State: per parameter and kind a float32 tensor of the parameter's shape on its device, created
// zeroed at construction (AdamW "exp_avg", "exp_avg_sq"; SGD with momentum "momentum_buffer"), plus
// the host step count t. The bias corrections (AdamW) and the first-step buffer rule (SGD) use this
// one count; torch counts per parameter, which differs only for a parameter that had no grad at some
// step (its later updates here use the global t; SGD with dampening then also starts its buffer
// from zero instead of the grad). With every parameter getting a grad each step, as in training,
// the two are identical.
//
// state_dict(): "<kind>.<param name>" (the optimizer's own tensors, not copies) and "step" (0-d
// int64, CPU). load_state_dict() copies values in; it is strict and names every missing,
// unexpected or mis-shaped entry. A resumed optimizer continues bit for bit.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "optim/optimizer_kernels.h"
#include "optim/param_groups.h"

namespace unirep {

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step(double lr, double weight_decay) = 0;
  void step(double lr);  // each group with its own weight_decay
  // A CUDA graph that captured step(lr, weight_decay) replays its kernels; restage is the host half
  // of step() to call before each replay: it counts the step and writes that step's per-group values
  // where the captured kernels read them (AdamW: pinned memory its captured upload copies from),
  // queueing nothing. Only optimizers whose kernels read their step values from device memory can
  // be replayed.
  virtual bool replayable() const { return false; }
  void restage(double lr, double weight_decay);
  // Rewinds the step count to `steps`: after a step that was captured but will never be replayed.
  void rewind_steps(int64_t steps);
  void zero_grad();
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t steps() const { return steps_; }

  virtual NamedTensors state_dict() const = 0;
  virtual void load_state_dict(const NamedTensors& state) = 0;

 protected:
  // Creates one zeroed tensor per parameter for each kind (called once by the constructor of a
  // derived class).
  void add_state_kinds(const std::vector<std::string>& kinds);
  // A parameter to update this step: its flat index (groups in order), its group, its grad (contiguous).
  struct ParamUpdate {
    size_t flat, group;
    Tensor param, grad;
  };
  // One optimizer step with weight decay group_wd[g] for group g: counts the step, then calls
  // apply() with every parameter that has a grad (flat order) and each group's lr (lr x lr_scale).
  void run(double lr, const std::vector<double>& group_wd);
  // restage's part for a replayable optimizer: write the step's values (t = steps()) for the replay.
  virtual void stage(const std::vector<double>&, const std::vector<double>&) {}
  // The wd of every group for a scheduled value: `weight_decay` where the group decays, else 0.
  std::vector<double> scheduled_weight_decay(double weight_decay) const;
  // Updates the parameters at their group's lr and wd; t = steps() counts this step.
  virtual void apply(const std::vector<ParamUpdate>& updates, const std::vector<double>& group_lr,
                     const std::vector<double>& group_wd) = 0;
  // The state tensor of kind `kind` (index into the kinds added) of parameter `flat`.
  const Tensor& state(size_t kind, size_t flat) const { return state_[kind][flat]; }
  NamedTensors export_state() const;
  void import_state(const NamedTensors& state);

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::string> names_;  // flat, groups in order
  std::vector<Tensor> params_;
  std::vector<std::string> kinds_;
  std::vector<std::vector<Tensor>> state_;  // [kind][flat]
  int64_t steps_ = 0;

  // Checks lr and the weight decays, counts the step and returns each group's lr.
  std::vector<double> count_step(double lr, const std::vector<double>& group_wd);
};

class AdamW : public Optimizer {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  ~AdamW() override;
  using Optimizer::step;
  void step(double lr, double weight_decay) override;
  bool replayable() const override { return true; }
  NamedTensors state_dict() const override { return export_state(); }
  void load_state_dict(const NamedTensors& state) override { import_state(state); }

 protected:
  void apply(const std::vector<ParamUpdate>& updates, const std::vector<double>& group_lr,
             const std::vector<double>& group_wd) override;
  void stage(const std::vector<double>& group_lr, const std::vector<double>& group_wd) override;

 private:
  std::vector<AdamWUpdate> step_functors(const std::vector<double>& group_lr, const std::vector<double>& group_wd) const;
  cuda::StagedUpload& staging(Device device);

  double beta1_, beta2_, eps_;
  std::vector<std::pair<int, std::unique_ptr<cuda::StagedUpload>>> staging_;  // per CUDA device index
};

class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<ParamGroup> groups, double momentum = 0.9, double dampening = 0.0, bool nesterov = false);
  using Optimizer::step;
  void step(double lr, double weight_decay) override;
  NamedTensors state_dict() const override { return export_state(); }
  void load_state_dict(const NamedTensors& state) override { import_state(state); }

 protected:
  void apply(const std::vector<ParamUpdate>& updates, const std::vector<double>& group_lr,
             const std::vector<double>& group_wd) override;

 private:
  double momentum_, dampening_;
  bool nesterov_;
};

// torch.nn.utils.clip_grad_norm_ (norm_type 2) over the defined grads of `params`: total = ||all
// grads||_2 (float32 accumulation, on the grads' device, no host synchronisation), then
// grads *= min(1, max_norm / (total + 1e-6)). Returns total as a 0-d float32 tensor (0 on the CPU
// when no param has a grad).
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace unirep
