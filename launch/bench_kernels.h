// GPU kernel timings against their floors (see bench_kernels.cpp).
#pragma once

namespace unirep {
int run_bench_kernels(double peak_tflops);
}
