#include "layers/module.h"

#include <functional>
#include <map>
#include <sstream>

#include "autograd/grad_mode.h"

namespace unirep {

std::string LoadReport::str() const {
  std::ostringstream os;
  auto list = [&](const char* what, const std::vector<std::string>& names) {
    if (names.empty()) return;
    os << what << " (" << names.size() << "):";
    for (const std::string& n : names) os << "\n  " << n;
    os << "\n";
  };
  list("missing from the checkpoint", missing);
  list("unexpected in the checkpoint", unexpected);
  list("shape mismatch", mismatched);
  return os.str();
}

void Module::register_parameter(const std::string& name, Tensor* slot) { parameters_.emplace_back(name, slot); }
void Module::register_buffer(const std::string& name, Tensor* slot) { buffers_.emplace_back(name, slot); }
void Module::register_module(const std::string& name, Module* child) { children_.emplace_back(name, child); }

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     std::vector<std::pair<std::string, Tensor*>>& out) const {
  if (params)
    for (auto& [name, slot] : parameters_) out.emplace_back(prefix + name, slot);
  if (buffers)
    for (auto& [name, slot] : buffers_) out.emplace_back(prefix + name, slot);
  for (auto& [name, child] : children_) child->collect(prefix + name + ".", params, buffers, out);
}

void Module::for_each_module(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& [name, child] : children_) child->for_each_module(fn);
}

namespace {
NamedTensors values(const std::vector<std::pair<std::string, Tensor*>>& slots) {
  NamedTensors out;
  out.reserve(slots.size());
  for (auto& [name, slot] : slots) out.emplace_back(name, *slot);
  return out;
}
}  // namespace

NamedTensors Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, true, slots);
  return values(slots);
}

NamedTensors Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, false, slots);
  return values(slots);
}

NamedTensors Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", false, true, slots);
  return values(slots);
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

LoadReport Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, true, slots);
  std::map<std::string, const Tensor*> given;
  for (auto& [name, t] : state) given[name] = &t;
  LoadReport report;
  std::map<std::string, Tensor*> by_name;
  for (auto& [name, slot] : slots) {
    by_name[name] = slot;
    auto it = given.find(name);
    if (it == given.end()) {
      report.missing.push_back(name);
    } else if (it->second->shape() != slot->shape()) {
      report.mismatched.push_back(name + ": checkpoint " + shape_str(it->second->shape()) + " vs model " +
                                  shape_str(slot->shape()));
    }
  }
  for (auto& [name, t] : state)
    if (!by_name.count(name)) report.unexpected.push_back(name);
  if (strict && !report.ok()) throw Error("load_state_dict: the checkpoint does not match the model\n" + report.str());
  NoGradGuard no_grad;
  for (auto& [name, t] : state) {
    auto it = by_name.find(name);
    if (it == by_name.end() || t.shape() != it->second->shape()) continue;
    it->second->copy_(t);
  }
  for_each_module([](Module& m) { m.on_state_loaded(); });
  return report;
}

void Module::train(bool on) {
  for_each_module([on](Module& m) { m.training_ = on; });
}

void Module::to(Device device) {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, true, slots);
  for (auto& [name, slot] : slots) {
    bool grad = slot->requires_grad();
    Tensor moved = slot->detach().to(device);
    if (grad) moved.requires_grad_();
    *slot = moved;
  }
}

void Module::to(DType dtype) {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, true, slots);
  for (auto& [name, slot] : slots) {
    if (!is_floating(slot->dtype())) continue;
    bool grad = slot->requires_grad();
    Tensor cast = slot->detach().to(dtype);
    if (grad) cast.requires_grad_();
    *slot = cast;
  }
}

}  // namespace unirep
