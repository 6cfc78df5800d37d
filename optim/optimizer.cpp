#include "optim/optimizer.h"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "core/cuda/staged_upload.h"
#include "optim/optimizer_kernels.h"

namespace unirep {

// ---------------------------------------------------------------- Optimizer

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  std::set<std::string> names;
  std::set<const TensorImpl*> seen;
  for (const ParamGroup& group : groups_) {
    UNIREP_CHECK(group.params.size() == group.param_names.size(), "Optimizer: group '", group.name, "' has ",
                 group.params.size(), " params but ", group.param_names.size(), " names");
    UNIREP_CHECK(group.weight_decay >= 0 && group.lr_scale >= 0, "Optimizer: group '", group.name,
                 "' needs weight_decay >= 0 and lr_scale >= 0, got ", group.weight_decay, " and ", group.lr_scale);
    for (size_t i = 0; i < group.params.size(); ++i) {
      const std::string& name = group.param_names[i];
      const Tensor& p = group.params[i];
      UNIREP_CHECK(p.defined(), "Optimizer: parameter '", name, "' is undefined");
      UNIREP_CHECK(p.dtype() == DType::Float32 && p.is_contiguous(), "Optimizer: parameter '", name,
                   "' must be a contiguous float32 tensor, got ", p.str());
      UNIREP_CHECK(names.insert(name).second, "Optimizer: parameter name '", name, "' appears twice");
      UNIREP_CHECK(seen.insert(p.impl()).second, "Optimizer: parameter '", name,
                   "' is the same tensor as an earlier parameter (in more than one group?)");
      names_.push_back(name);
      params_.push_back(p);
    }
  }
}

Optimizer::~Optimizer() = default;

void Optimizer::add_state_kinds(const std::vector<std::string>& kinds) {
  for (const std::string& kind : kinds) {
    std::vector<Tensor> tensors;
    tensors.reserve(params_.size());
    for (const Tensor& p : params_) tensors.push_back(Tensor::zeros(p.shape(), DType::Float32, p.device()));
    kinds_.push_back(kind);
    state_.push_back(std::move(tensors));
  }
}

void Optimizer::step(double lr) {
  std::vector<double> wd;
  for (const ParamGroup& group : groups_) wd.push_back(group.weight_decay);
  run(lr, wd);
}

std::vector<double> Optimizer::scheduled_weight_decay(double weight_decay) const {
  std::vector<double> wd;
  for (const ParamGroup& group : groups_) wd.push_back(group.weight_decay > 0 ? weight_decay : 0.0);
  return wd;
}

std::vector<double> Optimizer::count_step(double lr, const std::vector<double>& group_wd) {
  UNIREP_CHECK(lr >= 0, "Optimizer::step: lr must be >= 0, got ", lr);
  for (double wd : group_wd) UNIREP_CHECK(wd >= 0, "Optimizer::step: weight_decay must be >= 0, got ", wd);
  ++steps_;
  std::vector<double> group_lr;
  for (const ParamGroup& group : groups_) group_lr.push_back(lr * group.lr_scale);
  return group_lr;
}

void Optimizer::restage(double lr, double weight_decay) {
  UNIREP_CHECK(replayable(), "Optimizer::restage: this optimizer's kernels take their step values as arguments; "
               "a captured step of it cannot be replayed");
  const std::vector<double> group_wd = scheduled_weight_decay(weight_decay);
  stage(count_step(lr, group_wd), group_wd);
}

void Optimizer::rewind_steps(int64_t steps) {
  UNIREP_CHECK(steps >= 0 && steps <= steps_, "Optimizer::rewind_steps: ", steps, " is not in [0, ", steps_, "]");
  steps_ = steps;
}

void Optimizer::run(double lr, const std::vector<double>& group_wd) {
  const std::vector<double> group_lr = count_step(lr, group_wd);
  std::vector<ParamUpdate> updates;
  updates.reserve(params_.size());
  size_t flat = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (const Tensor& p : groups_[g].params) {
      Tensor grad = p.grad();
      if (grad.defined()) {
        UNIREP_CHECK(grad.shape() == p.shape(), "Optimizer::step: the grad of '", names_[flat], "' has shape ",
                     shape_str(grad.shape()), ", the parameter ", shape_str(p.shape()));
        updates.push_back({flat, g, p, grad.is_contiguous() ? grad : grad.contiguous()});
      }
      ++flat;
    }
  }
  apply(updates, group_lr, group_wd);
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.set_grad(Tensor());
}

NamedTensors Optimizer::export_state() const {
  NamedTensors out;
  for (size_t k = 0; k < kinds_.size(); ++k)
    for (size_t i = 0; i < params_.size(); ++i) out.emplace_back(kinds_[k] + "." + names_[i], state_[k][i]);
  out.emplace_back("step", Tensor::scalar(double(steps_), DType::Int64));
  return out;
}

void Optimizer::import_state(const NamedTensors& state) {
  std::map<std::string, Tensor*> slots;
  for (size_t k = 0; k < kinds_.size(); ++k)
    for (size_t i = 0; i < params_.size(); ++i) slots[kinds_[k] + "." + names_[i]] = &state_[k][i];
  std::set<std::string> present;
  std::vector<std::string> missing, unexpected, mismatched;
  const Tensor* step = nullptr;
  for (const auto& [name, t] : state) {
    present.insert(name);
    if (name == "step") {
      if (t.defined() && t.dim() == 0 && t.dtype() == DType::Int64)
        step = &t;
      else
        mismatched.push_back("step: expected a 0-d int64 tensor, got " + (t.defined() ? t.str() : "undefined"));
    } else if (!slots.count(name)) {
      unexpected.push_back(name);
    } else if (!t.defined() || t.shape() != slots[name]->shape()) {
      mismatched.push_back(name + ": checkpoint " + (t.defined() ? shape_str(t.shape()) : "undefined") +
                           " vs optimizer " + shape_str(slots[name]->shape()));
    }
  }
  for (const auto& [name, slot] : slots)
    if (!present.count(name)) missing.push_back(name);
  if (!present.count("step")) missing.push_back("step");
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream os;
    os << "Optimizer::load_state_dict: the state does not match this optimizer's parameters\n";
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      os << what << " (" << names.size() << "):";
      for (const std::string& n : names) os << "\n  " << n;
      os << "\n";
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("mismatched", mismatched);
    throw Error(os.str());
  }
  int64_t steps = int64_t(step->item());
  UNIREP_CHECK(steps >= 0, "Optimizer::load_state_dict: step must be >= 0, got ", steps);
  for (const auto& [name, t] : state)
    if (name != "step") slots[name]->copy_(t);
  steps_ = steps;
}

// ---------------------------------------------------------------- AdamW

AdamW::AdamW(std::vector<ParamGroup> groups, double beta1, double beta2, double eps)
    : Optimizer(std::move(groups)), beta1_(beta1), beta2_(beta2), eps_(eps) {
  UNIREP_CHECK(beta1 >= 0 && beta1 < 1, "AdamW: beta1 must be in [0, 1), got ", beta1);
  UNIREP_CHECK(beta2 >= 0 && beta2 < 1, "AdamW: beta2 must be in [0, 1), got ", beta2);
  UNIREP_CHECK(eps >= 0, "AdamW: eps must be >= 0, got ", eps);
  add_state_kinds({"exp_avg", "exp_avg_sq"});
}

void AdamW::step(double lr, double weight_decay) { run(lr, scheduled_weight_decay(weight_decay)); }

AdamW::~AdamW() = default;

std::vector<AdamWUpdate> AdamW::step_functors(const std::vector<double>& group_lr, const std::vector<double>& group_wd) const {
  std::vector<AdamWUpdate> out;
  for (size_t g = 0; g < group_lr.size(); ++g)
    out.push_back(AdamWUpdate::make(group_lr[g], group_wd[g], beta1_, beta2_, eps_, steps()));
  return out;
}

cuda::StagedUpload& AdamW::staging(Device device) {
  for (auto& [index, staged] : staging_)
    if (index == device.index) return *staged;
  staging_.emplace_back(device.index, std::make_unique<cuda::StagedUpload>(device.index));
  return *staging_.back().second;
}

void AdamW::stage(const std::vector<double>& group_lr, const std::vector<double>& group_wd) {
  const std::vector<AdamWUpdate> f = step_functors(group_lr, group_wd);
  for (auto& [index, staged] : staging_) staged->write(f.data(), f.size() * sizeof(AdamWUpdate));
}

// CUDA parameters go to adamw_update_multi, one call per device (in training: one call), with one
// functor per group.
void AdamW::apply(const std::vector<ParamUpdate>& updates, const std::vector<double>& group_lr,
                  const std::vector<double>& group_wd) {
  const std::vector<AdamWUpdate> functors = step_functors(group_lr, group_wd);
  std::vector<Device> cuda_devices;
  for (const ParamUpdate& u : updates) {
    if (!u.param.is_cuda())
      adamw_update(u.param, u.grad, state(0, u.flat), state(1, u.flat), functors[u.group]);
    else if (std::find(cuda_devices.begin(), cuda_devices.end(), u.param.device()) == cuda_devices.end())
      cuda_devices.push_back(u.param.device());
  }
  for (const Device& device : cuda_devices) {
    std::vector<AdamWTensors> batch;
    for (const ParamUpdate& u : updates)
      if (u.param.device() == device) batch.push_back({u.param, u.grad, state(0, u.flat), state(1, u.flat), u.group});
    adamw_update_multi(batch, functors, &staging(device));
  }
}

// ---------------------------------------------------------------- SGD

SGD::SGD(std::vector<ParamGroup> groups, double momentum, double dampening, bool nesterov)
    : Optimizer(std::move(groups)), momentum_(momentum), dampening_(dampening), nesterov_(nesterov) {
  UNIREP_CHECK(momentum >= 0, "SGD: momentum must be >= 0, got ", momentum);
  UNIREP_CHECK(!nesterov || (momentum > 0 && dampening == 0), "SGD: nesterov needs momentum > 0 and dampening 0, got ",
               momentum, " and ", dampening);
  if (momentum > 0) add_state_kinds({"momentum_buffer"});
}

void SGD::step(double lr, double weight_decay) { run(lr, scheduled_weight_decay(weight_decay)); }

void SGD::apply(const std::vector<ParamUpdate>& updates, const std::vector<double>& group_lr,
                const std::vector<double>& group_wd) {
  for (const ParamUpdate& u : updates) {
    SgdUpdate f{float(group_lr[u.group]), float(group_wd[u.group]), float(momentum_), float(1.0 - dampening_),
                nesterov_, steps() == 1};
    sgd_update(u.param, u.grad, momentum_ > 0 ? state(0, u.flat) : Tensor(), f);
  }
}

// ---------------------------------------------------------------- clipping

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  UNIREP_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (g.defined()) grads.push_back(g);
  }
  Tensor total = Tensor::zeros({}, DType::Float32, grads.empty() ? Device::cpu() : grads[0].device());
  global_norm(grads, total);
  clip_by_norm(grads, total, float(max_norm));
  return total;
}

}  // namespace unirep
