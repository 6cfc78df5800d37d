// Module: named parameters, buffers and children, so state-dict names fall out of the tree
// ("stages.2.5.dwconv.lk_origin.weight") in PyTorch's order: a module's own parameters, then its own
// buffers, then its children in registration order.
//
// Subclasses keep their tensors and children as members and register pointers to them in the
// constructor; modules are therefore created with std::make_shared and never copied or moved.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace unirep {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the state dict
  std::vector<std::string> unexpected;  // in the state dict, not in the module
  std::vector<std::string> mismatched;  // "name: checkpoint [..] vs model [..]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string str() const;
};

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  NamedTensors state_dict() const;
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  // Copies values by name (converting dtype and device to the module's). strict: any missing,
  // unexpected or mis-shaped name throws an Error listing them all; otherwise the matching entries
  // load and the report says what did not.
  LoadReport load_state_dict(const NamedTensors& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

  // Moves every tensor; to(dtype) converts the floating ones (int64 counters stay).
  void to(Device device);
  void to(DType dtype);

  const std::vector<std::pair<std::string, Module*>>& children() const { return children_; }

 protected:
  void register_parameter(const std::string& name, Tensor* slot);
  void register_buffer(const std::string& name, Tensor* slot);
  void register_module(const std::string& name, Module* child);
  // Called after load_state_dict wrote this module's tensors (e.g. to refresh host-side copies).
  virtual void on_state_loaded() {}

 private:
  void collect(const std::string& prefix, bool params, bool buffers, std::vector<std::pair<std::string, Tensor*>>& out) const;
  void for_each_module(const std::function<void(Module&)>& fn);

  std::vector<std::pair<std::string, Tensor*>> parameters_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

// A module that only groups named children (PyTorch's Sequential/ModuleList indices).
class Container : public Module {
 public:
  template <class M> M* add(const std::string& name, std::shared_ptr<M> child) {
    owned_.push_back(child);
    register_module(name, child.get());
    return child.get();
  }

 private:
  std::vector<std::shared_ptr<Module>> owned_;
};

}  // namespace unirep
