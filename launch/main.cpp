// The `unirep` command line. Subcommands live in their own files; this file parses and dispatches.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "launch/bench_kernels.h"
#include "launch/demo.h"

namespace {

void usage() {
  std::puts(
      "usage: unirep <command> [options]\n"
      "commands:\n"
      "  demo [--steps N] [--batch B] [--lr LR] [--seed S] [--device auto|cpu|cuda] [--min-accuracy A]\n"
      "       train a small conv net end to end on a synthetic task (the quickstart for now)\n"
      "  bench-kernels [--peak-tflops T]\n"
      "       time the op families on the GPU against their byte/FLOP floors (default peak 989 bf16 TFLOP/s)\n"
      "  help  this text");
}

// Value of option `argv[i]`, advancing i; throws naming the option when it is missing.
std::string value_of(int argc, char** argv, int& i) {
  std::string name = argv[i];
  if (i + 1 >= argc) throw unirep::Error("unirep: option " + name + " needs a value");
  return argv[++i];
}

template <class T> T parse_number(const std::string& option, const std::string& text) {
  try {
    size_t used = 0;
    T v;
    if constexpr (std::is_floating_point_v<T>) v = T(std::stod(text, &used));
    else v = T(std::stoll(text, &used));
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw unirep::Error("unirep: option " + option + " expects a number, got '" + text + "'");
}

int demo(int argc, char** argv) {
  unirep::DemoOptions o;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps") o.steps = parse_number<int>(a, value_of(argc, argv, i));
    else if (a == "--batch") o.batch = parse_number<int>(a, value_of(argc, argv, i));
    else if (a == "--lr") o.lr = parse_number<double>(a, value_of(argc, argv, i));
    else if (a == "--seed") o.seed = parse_number<uint64_t>(a, value_of(argc, argv, i));
    else if (a == "--min-accuracy") o.min_accuracy = parse_number<double>(a, value_of(argc, argv, i));
    else if (a == "--device") {
      o.device = value_of(argc, argv, i);
      if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
        throw unirep::Error("unirep demo: --device expects auto, cpu or cuda, got '" + o.device + "'");
    } else {
      throw unirep::Error("unirep demo: unknown option '" + a + "' (see unirep help)");
    }
  }
  if (o.steps < 1 || o.batch < 1) throw unirep::Error("unirep demo: --steps and --batch must be positive");
  return unirep::run_demo(o);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  std::string command = argv[1];
  try {
    if (command == "demo") return demo(argc, argv);
    if (command == "bench-kernels") {
      double peak = 989;
      for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a != "--peak-tflops") throw unirep::Error("unirep bench-kernels: unknown option '" + a + "'");
        peak = parse_number<double>(a, value_of(argc, argv, i));
      }
      return unirep::run_bench_kernels(peak);
    }
    if (command == "help" || command == "--help" || command == "-h") {
      usage();
      return 0;
    }
    std::fprintf(stderr, "unirep: unknown command '%s'\n", command.c_str());
    usage();
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
