// Activation checkpointing (autograd/checkpoint.h): a no-grad forward, one node saving the inputs,
// and a backward that restores the generators, recomputes with grad mode on and runs the engine
// re-entrantly over the recomputed graph.
#include "autograd/checkpoint.h"

#include <algorithm>
#include <unordered_set>

#include "autograd/autocast.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"

namespace unirep {

namespace {

thread_local int g_recompute_depth = 0;

struct GenState {
  uint64_t seed = 0, offset = 0;
  bool operator==(const GenState& o) const { return seed == o.seed && offset == o.offset; }
};

std::vector<GenState> states_of(const std::vector<Generator*>& gens) {
  std::vector<GenState> s;
  s.reserve(gens.size());
  for (Generator* g : gens) s.push_back({g->seed(), g->offset()});
  return s;
}

void set_states(const std::vector<Generator*>& gens, const std::vector<GenState>& s) {
  for (size_t i = 0; i < gens.size(); ++i) gens[i]->set_state(s[i].seed, s[i].offset);
}

// Puts the generators back to the state they had at construction, also when the recompute throws.
class RngRestore {
 public:
  explicit RngRestore(const std::vector<Generator*>& gens) : gens_(gens), saved_(states_of(gens)) {}
  ~RngRestore() { set_states(gens_, saved_); }
  RngRestore(const RngRestore&) = delete;
  RngRestore& operator=(const RngRestore&) = delete;

 private:
  const std::vector<Generator*>& gens_;
  std::vector<GenState> saved_;
};

// Grad mode on (the engine runs backward functions with it off) and the recompute flag raised.
class RecomputeScope {
 public:
  RecomputeScope() : prev_(GradMode::is_enabled()) {
    GradMode::set_enabled(true);
    ++g_recompute_depth;
  }
  ~RecomputeScope() {
    --g_recompute_depth;
    GradMode::set_enabled(prev_);
  }
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;

 private:
  bool prev_;
};

// Reads the sequence number the next node will get: nodes created by the recompute have one at
// least as large, every older node belongs to a graph outside the checkpoint.
class SequenceProbe : public Node {
 public:
  SequenceProbe() : Node("checkpoint sequence probe") {}
  std::vector<Tensor> apply(std::vector<Tensor>&&) override { return {}; }
};

// Throws if the recomputed graph reaches a node recorded before the recompute other than a
// leaf's AccumulateGrad: fn captured a non-leaf tensor that requires grad, whose history the inner
// backward would run (and free) behind the outer engine's back.
void check_no_foreign_history(const std::vector<Tensor>& outs, uint64_t first_seq) {
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (const Tensor& t : outs)
    if (t.grad_fn() && seen.insert(t.grad_fn().get()).second) stack.push_back(t.grad_fn().get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.valid() || !seen.insert(e.node.get()).second) continue;
      if (e.node->sequence_nr() >= first_seq) {
        stack.push_back(e.node.get());
      } else {
        UNIREP_CHECK(dynamic_cast<AccumulateGrad*>(e.node.get()) != nullptr,
                     "checkpoint: fn uses a tensor produced by '", e.node->name(), "' (feeding '", n->name(),
                     "') that requires grad but is not one of the checkpoint's inputs; only leaves (parameters) "
                     "may be captured: pass that tensor in `inputs`");
      }
    }
  }
}

}  // namespace

bool in_checkpoint_recompute() { return g_recompute_depth > 0; }

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                               std::vector<Generator*> generators) {
  UNIREP_CHECK(fn != nullptr, "checkpoint: fn is empty (", inputs.size(), " inputs)");
  if (!needs_grad(inputs)) return fn(inputs);

  // The default generator is always preserved; duplicates and nulls are dropped.
  generators.push_back(&default_generator());
  std::vector<Generator*> gens;
  for (Generator* g : generators)
    if (g && std::find(gens.begin(), gens.end(), g) == gens.end()) gens.push_back(g);

  std::vector<Tensor> saved;
  saved.reserve(inputs.size());
  for (const Tensor& t : inputs) saved.push_back(save(t));

  const std::vector<GenState> before = states_of(gens);
  const bool autocast_on = autocast_enabled();
  const DType autocast_type = autocast_dtype();
  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = fn(saved);
  }
  const std::vector<GenState> after = states_of(gens);

  std::vector<Shape> out_shapes;
  std::vector<DType> out_dtypes;
  for (size_t i = 0; i < outs.size(); ++i) {
    UNIREP_CHECK(outs[i].defined(), "checkpoint: output ", i, " of fn is undefined (", outs.size(), " outputs)");
    UNIREP_CHECK(is_floating(outs[i].dtype()), "checkpoint: output ", i, " of fn is ", outs[i].str(),
                 "; every output must be floating (it becomes differentiable)");
    // A new handle per output: the caller's tensors are owned by the node even where fn returned
    // one of its inputs, or the same tensor twice.
    outs[i] = outs[i].detach();
    out_shapes.push_back(outs[i].shape());
    out_dtypes.push_back(outs[i].dtype());
  }
  if (outs.empty()) return outs;

  std::vector<bool> input_requires_grad;
  for (const Tensor& t : inputs) input_requires_grad.push_back(t.defined() && t.requires_grad());

  record("checkpoint", inputs, outs,
         [fn, saved = std::move(saved), input_requires_grad, gens = std::move(gens), before, after, out_shapes,
          out_dtypes, autocast_on, autocast_type](const std::vector<Tensor>& grads) {
           std::vector<Tensor> copies;
           std::vector<Tensor> recomputed;
           {
             RngRestore restore(gens);  // back to the state at backward entry, whatever happens
             set_states(gens, before);
             SequenceProbe probe;
             RecomputeScope scope;
             AutocastGuard autocast(autocast_type, autocast_on);  // the forward's casts, again
             copies.reserve(saved.size());
             for (size_t i = 0; i < saved.size(); ++i) {
               Tensor c = saved[i].defined() ? saved[i].detach() : Tensor();
               if (input_requires_grad[i]) c.requires_grad_();
               copies.push_back(c);
             }
             recomputed = fn(copies);
             for (size_t i = 0; i < gens.size(); ++i) {
               GenState now{gens[i]->seed(), gens[i]->offset()};
               UNIREP_CHECK(now == after[i], "checkpoint: the recompute left a generator at (seed ", now.seed,
                            ", offset ", now.offset, ") but the forward left it at (seed ", after[i].seed,
                            ", offset ", after[i].offset,
                            "); fn must draw the same random numbers every time it runs");
             }
             UNIREP_CHECK(recomputed.size() == out_shapes.size(), "checkpoint: the recompute returned ",
                          recomputed.size(), " outputs, the forward ", out_shapes.size());
             for (size_t i = 0; i < recomputed.size(); ++i)
               UNIREP_CHECK(recomputed[i].defined() && recomputed[i].shape() == out_shapes[i] &&
                                recomputed[i].dtype() == out_dtypes[i],
                            "checkpoint: recomputed output ", i, " is ",
                            recomputed[i].defined() ? recomputed[i].str() : std::string("undefined"),
                            " but the forward returned ", dtype_name(out_dtypes[i]), shape_str(out_shapes[i]));
             check_no_foreign_history(recomputed, probe.sequence_nr());
           }

           std::vector<Tensor> roots, root_grads;
           for (size_t i = 0; i < recomputed.size(); ++i) {
             if (!grads[i].defined() || !recomputed[i].requires_grad()) continue;
             roots.push_back(recomputed[i]);
             root_grads.push_back(grads[i]);
           }
           if (!roots.empty()) run_backward(roots, root_grads, /*retain_graph=*/false);

           std::vector<Tensor> input_grads(copies.size());
           for (size_t i = 0; i < copies.size(); ++i)
             if (input_requires_grad[i]) input_grads[i] = copies[i].grad();
           return input_grads;
         });
  return outs;
}

}  // namespace unirep
