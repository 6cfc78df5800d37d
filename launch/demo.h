// The end-to-end autograd demo behind `unirep demo` (see demo.cpp).
#pragma once
#include <cstdint>
#include <string>

namespace unirep {

struct DemoOptions {
  int steps = 150;
  int batch = 64;
  double lr = 0.1;
  uint64_t seed = 0;
  std::string device = "auto";  // auto | cpu | cuda
  double min_accuracy = 0.0;    // exit status 1 when the held-out accuracy ends below this
};

int run_demo(const DemoOptions& options);

}  // namespace unirep
