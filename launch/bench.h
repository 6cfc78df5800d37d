// `unirep bench`: training-step or inference throughput of a UniRepLKNet variant on a synthetic
// batch, on one device or data-parallel under mpirun/srun (see bench.cpp).
#pragma once

namespace unirep {

const char* bench_usage();
int command_bench(int argc, char** argv);

}  // namespace unirep
