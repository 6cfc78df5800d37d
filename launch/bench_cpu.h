// `unirep bench-cpu`: CPU training-step throughput of a UniRepLKNet variant (see bench_cpu.cpp).
#pragma once

namespace unirep {
int command_bench_cpu(int argc, char** argv);
}
