// The backward engine: dependency counting over the recorded graph, then a ready queue ordered by
// creation (latest first), which is a reverse topological order in which the last layer's
// parameters become final first (what a bucketed gradient all-reduce wants).
#include <atomic>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace unirep {

namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence_nr{0};
}  // namespace

bool GradMode::is_enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool enabled) { g_grad_enabled = enabled; }

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(g_next_sequence_nr++) {}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grads) {
  UNIREP_CHECK(fn_ != nullptr, "backward through '", name(),
               "' a second time: its saved tensors were freed; pass retain_graph=true to the first backward");
  return fn_(grads);
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : Node("AccumulateGrad"), leaf_(std::move(leaf)) {
  output_meta.push_back({leaf_->shape, leaf_->dtype, leaf_->storage->device});
}

namespace {
// A first gradient nobody else references (the usual case: a backward function's fresh result)
// becomes the leaf's .grad as it is, as in torch: one copy launch less per parameter and step.
bool owns_whole_storage(const Tensor& g, const Tensor& leaf) {
  return g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && !g.requires_grad() && !g.grad_fn() &&
         g.offset() == 0 && g.is_contiguous() && g.dtype() == leaf.dtype() && g.shape() == leaf.shape() &&
         g.device() == leaf.device() && g.storage()->nbytes == size_t(g.numel()) * g.element_size() &&
         !g.storage()->pinned;
}
}  // namespace

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  Tensor leaf(leaf_);
  Tensor g = std::move(grads[0]);
  AutogradMeta& meta = leaf_->autograd_meta();
  if (!meta.grad.defined()) {
    if (owns_whole_storage(g, leaf)) {
      meta.grad = std::move(g);
    } else {
      meta.grad = Tensor::empty(leaf.shape(), leaf.dtype(), leaf.device());
      meta.grad.copy_(g);
    }
  } else {
    meta.grad.add_(g);
  }
  for (auto& hook : meta.grad_ready_hooks) hook(leaf);
  return {};
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace {
Edge edge_for(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.output_nr()};
  AutogradMeta& meta = t.impl()->autograd_meta();
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    meta.grad_accumulator = acc;
  }
  return {acc, 0};
}
}  // namespace

void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn fn) {
  auto node = std::make_shared<FunctionNode>(name, std::move(fn));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next_edges.push_back(edge_for(t));
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    node->output_meta.push_back({out.shape(), out.dtype(), out.device()});
    AutogradMeta& meta = out.impl()->autograd_meta();
    meta.requires_grad = true;
    meta.grad_fn = node;
    meta.output_nr = uint32_t(i);
  }
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads, bool retain_graph) {
  UNIREP_CHECK(roots.size() == root_grads.size(), "backward: ", roots.size(), " roots but ", root_grads.size(),
               " gradients");
  NoGradGuard no_grad;
  // Backward functions run in the dtypes their forward chose, never re-cast (autograd/autocast.h).
  AutocastGuard no_autocast(autocast_dtype(), false);

  // Buffers of incoming gradients, one slot per node output.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::unordered_map<Node*, int> dependencies;
  std::vector<std::shared_ptr<Node>> starts;

  auto accumulate = [&](const std::shared_ptr<Node>& node, uint32_t slot, const Tensor& g) {
    const TensorMeta& meta = node->output_meta.at(slot);
    UNIREP_CHECK(g.shape() == meta.shape, "backward: gradient of shape ", shape_str(g.shape()), " flows into '",
                 node->name(), "' output ", slot, " of shape ", shape_str(meta.shape));
    std::vector<Tensor>& buf = buffers[node.get()];
    if (buf.empty()) buf.resize(node->output_meta.size());
    Tensor gg = g.dtype() == meta.dtype ? g : g.to(meta.dtype);
    buf[slot] = buf[slot].defined() ? add(buf[slot], gg) : gg;
  };

  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    UNIREP_CHECK(root.requires_grad(), "backward: the tensor ", root.str(),
                 " does not require grad (no input of its graph had requires_grad set)");
    Tensor g = root_grads[i];
    if (!g.defined()) {
      UNIREP_CHECK(root.numel() == 1, "backward: a gradient must be given for a non-scalar root of shape ",
                   shape_str(root.shape()));
      g = Tensor::ones(root.shape(), root.dtype(), root.device());
    }
    Edge e = edge_for(root);
    accumulate(e.node, e.input_nr, g);
    starts.push_back(e.node);
  }

  // Count, for every node reachable from the roots, how many edges point at it.
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& s : starts)
    if (seen.insert(s.get()).second) stack.push_back(s.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.valid()) continue;
      ++dependencies[e.node.get()];
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  auto later_first = [](const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) {
    return a->sequence_nr() < b->sequence_nr();
  };
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, decltype(later_first)> ready(
      later_first);
  std::unordered_set<Node*> queued;
  for (auto& s : starts)
    if (dependencies[s.get()] == 0 && queued.insert(s.get()).second) ready.push(s);

  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    std::vector<Tensor> grads = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    grads.resize(node->output_meta.size());
    bool any = false;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].defined()) {
        any = true;
      } else {
        const TensorMeta& m = node->output_meta[i];
        grads[i] = Tensor::zeros(m.shape, m.dtype, m.device);
      }
    }
    std::vector<Tensor> input_grads;
    if (any) {
      input_grads = node->apply(std::move(grads));
      if (!retain_graph) node->release_saved();
    }
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.valid()) continue;
      if (i < input_grads.size() && input_grads[i].defined()) accumulate(e.node, e.input_nr, input_grads[i]);
      if (--dependencies[e.node.get()] == 0) ready.push(e.node);
    }
  }
}

}  // namespace unirep
