// The `unirep` command line: parses the subcommand and hands over; each subcommand lives in its own file.
#include <cstdio>
#include <string>

#include "core/device.h"
#include "core/error.h"
#include "datasets/data_command.h"
#include "distributed/dist_check.h"
#include "distributed/process_group.h"
#include "launch/args.h"
#include "launch/bench.h"
#include "launch/bench_cpu.h"
#include "launch/bench_kernels.h"
#include "launch/demo.h"
#include "launch/model_commands.h"
#include "launch/train_command.h"
#include "launch/plot.h"

namespace {

void usage() {
  std::fputs(
      "usage: unirep <command> [options]\n"
      "commands:\n"
      "  info --model V [--deploy] [--image-size 224] [--num-classes 1000] [--in-chans 3] [--json] [--list]\n"
      "       parameters and multiply-accumulates of UniRepLKNet-V (V = a f p n t s b l xl)\n"
      "  reparam IN.h5 OUT.h5\n"
      "       write the deploy-structure (re-parameterised) checkpoint of a training checkpoint\n"
      "  predict --model V [--deploy] [--num-classes N] --checkpoint X.h5 --input in.h5 --output out.h5\n"
      "          [--device auto|cpu|cuda]\n"
      "       eval-mode logits: in.h5 holds float32 'input' [N, C, H, W]; out.h5 gets 'logits' [N, classes]\n"
      "  demo [--steps N] [--batch B] [--lr LR] [--seed S] [--device auto|cpu|cuda] [--min-accuracy A]\n"
      "       train a small conv net end to end on a synthetic task\n"
      "  bench-kernels [--peak-tflops T]\n"
      "       time the op families on the GPU against their byte/FLOP floors (default peak 989 bf16 TFLOP/s)\n"
      "  bench-cpu [--model a] [--batch 128] [--image-size 32] [--in-chans 1] [--num-classes 10] [--steps 10]\n"
      "       CPU training-step throughput (forward + backward, no optimizer) on a random batch\n"
      "  plot RUN_DIR [--out DIR] [--python EXE]\n"
      "       PNG curves of a run's metrics.jsonl (loss, lr, accuracy) into RUN_DIR/plots; needs a Python with\n"
      "       matplotlib (exit 3 when there is none)\n",
      stdout);
  std::fputs(unirep::bench_usage(), stdout);
  std::fputs(unirep::train_usage(), stdout);
  std::fputs(unirep::data_usage(), stdout);
  std::fputs(unirep::dist_check_usage(), stdout);
  std::fputs("  help  this text\n", stdout);
}

int demo(int argc, char** argv) {
  unirep::Args args(argc, argv, 2, {"--steps", "--batch", "--lr", "--seed", "--device", "--min-accuracy"}, {});
  unirep::DemoOptions o;
  o.steps = int(args.get_int("--steps", o.steps));
  o.batch = int(args.get_int("--batch", o.batch));
  o.lr = args.get_double("--lr", o.lr);
  o.seed = uint64_t(args.get_int("--seed", int64_t(o.seed)));
  o.min_accuracy = args.get_double("--min-accuracy", o.min_accuracy);
  o.device = args.get("--device", o.device);
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
    throw unirep::Error("unirep demo: --device expects auto, cpu or cuda, got '" + o.device + "'");
  if (o.steps < 1 || o.batch < 1) throw unirep::Error("unirep demo: --steps and --batch must be positive");
  return unirep::run_demo(o);
}

int bench_kernels(int argc, char** argv) {
  unirep::Args args(argc, argv, 2, {"--peak-tflops"}, {});
  return unirep::run_bench_kernels(args.get_double("--peak-tflops", 989));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  std::string command = argv[1];
  try {
    if (command == "info") return unirep::command_info(argc, argv);
    if (command == "reparam") return unirep::command_reparam(argc, argv);
    if (command == "predict") return unirep::command_predict(argc, argv);
    if (command == "demo") return demo(argc, argv);
    if (command == "bench-kernels") return bench_kernels(argc, argv);
    if (command == "bench") return unirep::command_bench(argc, argv);
    if (command == "bench-cpu") return unirep::command_bench_cpu(argc, argv);
    if (command == "data") return unirep::data_command(argc, argv);
    if (command == "train") return unirep::command_train(argc, argv);
    if (command == "eval") return unirep::command_eval(argc, argv);
    if (command == "plot") return unirep::command_plot(argc, argv);
    if (command == "dist-check") return unirep::command_dist_check(argc, argv);
    if (command == "help" || command == "--help" || command == "-h") {
      usage();
      return 0;
    }
    std::fprintf(stderr, "unirep: unknown command '%s'\n", command.c_str());
    usage();
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    unirep::shutdown_distributed(1);  // under mpirun: ends the other ranks now, not at their watchdog timeout
    return 1;
  }
}
