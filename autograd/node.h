// The recorded graph. Every differentiable op that runs with grad mode on and an input that
// requires grad creates one Node holding its backward function; the node's edges point at the
// nodes that produced its inputs (or at the AccumulateGrad node of a leaf). Saved tensors are
// detached copies of the handles (storage shared, no history), so a node never keeps its own
// outputs' history alive and there are no reference cycles; they are dropped after backward.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace unirep {

class Node;

struct Edge {
  std::shared_ptr<Node> node;
  uint32_t input_nr = 0;
  bool valid() const { return node != nullptr; }
};

// What a gradient flowing into a node's output must look like.
struct TensorMeta {
  Shape shape;
  DType dtype = DType::Float32;
  Device device;
};

class Node {
 public:
  explicit Node(std::string name);
  virtual ~Node() = default;
  // grads[i] is the gradient w.r.t. output i (zeros when nothing flowed there); returns one gradient
  // per edge (undefined where the input needs none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual void release_saved() {}

  const std::string& name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }

  std::vector<Edge> next_edges;
  std::vector<TensorMeta> output_meta;

 private:
  std::string name_;
  uint64_t sequence_nr_;
};

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

// A node whose backward is a closure; the closure (and what it saved) is freed after backward.
class FunctionNode : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  void release_saved() override { fn_ = nullptr; }

 private:
  BackwardFn fn_;
};

// Sink of a leaf: adds the incoming gradient to leaf.grad, then runs the leaf's grad-ready hooks.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  Tensor leaf() const { return Tensor(leaf_); }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// ---- recording, used by every differentiable op

// True when grad mode is on and some input requires grad.
bool needs_grad(const std::vector<Tensor>& inputs);
// Detached handle for a backward closure to keep.
inline Tensor save(const Tensor& t) { return t.defined() ? t.detach() : Tensor(); }
// Makes `outputs` the results of a new node named `name` whose backward is `fn`. Call only when
// needs_grad(inputs) holds. `fn` returns one gradient per input (undefined for inputs without grad).
void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn);

// ---- running backward

// Accumulates d(roots)/d(leaf) into every reachable leaf's .grad, walking the graph in reverse
// topological order (latest-created node first among the ready ones).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads, bool retain_graph);

}  // namespace unirep
