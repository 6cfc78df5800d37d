// `unirep dist-check`: checks a data-parallel setup end to end. Launched like training (mpirun,
// srun --mpi=pmix), every rank all-reduces (sum of float32, max of int64) and broadcasts known
// tensors, broadcasts a small model's initial state from rank 0, and averages the gradients of two
// linear layers through a GradientReducer with small buckets, comparing them with the mean of every
// rank's gradient computed locally. Each rank prints "rank r/size backend OK"; rank 0 then prints
// "dist-check: all <size> ranks OK (<backend>)".
//
// Failure drills: --die-at-rank R makes rank R SIGKILL itself in the middle of the reducer's
// backward (after its first bucket all-reduce was issued); --stall-at-rank R makes it sleep there
// instead, so the other ranks' watchdog must end the job after --timeout seconds.
//
// Bandwidth: --bandwidth times all-reduces (sum) of 1 MiB .. --max-mb MiB buffers (doubling;
// float32, and bf16 on NCCL) and prints per size, on rank 0, the time per all-reduce (slowest
// rank), algbw = bytes / time and busbw = algbw * 2 (n - 1) / n, as nccl-tests defines them.
#pragma once

namespace unirep {

const char* dist_check_usage();
int command_dist_check(int argc, char** argv);

}  // namespace unirep
