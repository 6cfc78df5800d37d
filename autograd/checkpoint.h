// Activation checkpointing: recompute a block in backward instead of keeping its activations
// (the reentrant variant of torch.utils.checkpoint).
//
//   std::vector<Tensor> out = checkpoint([&](const std::vector<Tensor>& in) {
//     return std::vector<Tensor>{block.forward(in[0])};
//   }, {x}, {&drop_gen});
//
// Memory trade. Without checkpointing, every op inside `fn` saves what its backward needs, so a
// block keeps several activation-sized tensors alive until backward. With it, `fn` runs under
// NoGradGuard (nothing is recorded, every intermediate is freed as soon as `fn` returns) and ONE
// node is recorded that saves only the inputs (detached handles, storage shared with the caller's
// tensors; nothing is copied). Its backward re-runs `fn` with grad mode on, on fresh detached
// copies of the inputs, then runs the engine over that recomputed graph with the incoming
// gradients. Cost: one extra forward of the block per step (about a third more compute when
// every block is checkpointed); peak memory: the inputs of every checkpointed block plus the full
// activations of ONE block while its backward runs. Measured on an H100 (the test
// Checkpoint.CudaPeakMemoryIsBoundedByOneBlock: 8 blocks of dwconv + BN + MLP 4x on 2 MiB
// activations): peak live memory over forward + backward 393 MiB plain, 72 MiB checkpointed.
//
// Gradients. The node returns the gradients of `inputs`. Leaves that `fn` captures (a block's
// weights) get theirs through their own AccumulateGrad nodes during the inner backward, exactly
// as without checkpointing, and their grad-ready hooks fire then, once per checkpoint call in
// which they are used. A leaf used by two checkpointed calls, or also outside the checkpoint,
// therefore fires its hooks more than once per backward (PyTorch's reentrant checkpoint has the
// same property; give such shared parameters as `inputs` instead). `fn` may capture only leaves
// and tensors that do not require grad: a captured non-leaf that requires grad would be
// backpropagated by the inner engine behind the outer one's back, so the recompute detects it and
// throws, naming the node that produced it; pass such tensors in `inputs`. `inputs` may contain
// undefined tensors and tensors that need no grad. Every output of `fn` must be a defined
// floating tensor; the returned tensors are new handles (storage shared with what `fn` returned)
// whose grad_fn is the checkpoint node. retain_graph works (every backward recomputes again).
//
// When grad mode is off or no input requires grad, checkpoint just returns fn(inputs) in the
// current grad mode (so a block fed by a tensor that needs no grad still trains its captured
// weights, without saving memory).
//
// RNG rule. Masks (dropout, drop_path) come from counter-based generators whose whole state is
// (seed, offset). checkpoint remembers the state of every generator in `generators`, plus the
// process-wide default_generator(), before the forward. The backward sets them back to that
// state, recomputes (so the same masks are drawn), checks that the recompute left each one where
// the original forward did (it throws otherwise: `fn` drew a different amount), and then puts
// them back to the state they had when the backward started, so draws after the backward are
// exactly those without checkpointing. Every generator that `fn` draws from must be listed (or
// be the default one) and must outlive the backward.
//
// Batch norm. The recompute runs `fn` in training mode again, so batch_norm updates its running
// statistics a second time (momentum applied twice with the same batch statistics; PyTorch
// behaves the same). The batch statistics, and so the output and every gradient, are unaffected.
// To avoid the second update, pass undefined running stats while in_checkpoint_recompute():
//   batch_norm(x, w, b, in_checkpoint_recompute() ? Tensor() : rm, in_checkpoint_recompute() ? Tensor() : rv, true)
//
// Autocast. The recompute runs under the autocast state (autograd/autocast.h) that was current
// when checkpoint was called, not the one of the backward (the engine suspends autocast), so it
// casts exactly as the forward did.
//
// Nesting: fn may itself call checkpoint (its forward runs without grad, so the inner call only
// records during the outer recompute); the engine is re-entrant (run_backward keeps its state
// on the stack and restores grad mode on exit).
#pragma once
#include <functional>
#include <vector>

#include "core/generator.h"
#include "core/tensor.h"

namespace unirep {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                               std::vector<Generator*> generators = {});

// True while the current thread re-runs a checkpointed fn inside backward.
bool in_checkpoint_recompute();

}  // namespace unirep
