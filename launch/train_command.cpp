#include "launch/train_command.h"

#include <cstdio>
#include <filesystem>

#include "launch/args.h"
#include "launch/config.h"
#include "launch/trainer.h"

namespace unirep {

namespace fs = std::filesystem;

const char* train_usage() {
  return "  train --config FILE [--set key=value ...] [--out DIR] [--resume auto|PATH]\n"
         "       train per a YAML config (experiments/README.md); the run folder (default runs/<config name>) gets\n"
         "       config.yaml, metrics.jsonl, checkpoints/, model.h5 and result.json; --resume auto continues the\n"
         "       newest checkpoint there; SIGTERM, SIGINT or SIGUSR1 stop it at the next step with a checkpoint\n"
         "       (exit status 128 + signal)\n"
         "  eval --config FILE --checkpoint PATH [--set key=value ...] [--ema] [--json]\n"
         "       top-1/top-5 of a checkpoint or state dict on the config's eval split (--json: one JSON object)\n";
}

int command_train(int argc, char** argv) {
  Args args(argc, argv, 2, {"--config", "--set", "--out", "--resume"}, {});
  const std::string config_path = args.require("--config");
  TrainConfig config = load_train_config(config_path, args.get_all("--set"));
  std::string resume = args.get("--resume", config.checkpoint.resume);
  const std::string out = args.get("--out", (fs::path("runs") / fs::path(config_path).stem()).string());
  TrainResult r = train(config, out, resume);
  // Stopped by a signal: the shell convention 128 + signal, on every rank (the run is not finished).
  if (r.stop_signal != 0) return 128 + r.stop_signal;
  if (r.rank != 0) return 0;
  if (r.already_complete) std::printf("the run in %s had already finished (step %lld)\n", out.c_str(), (long long)r.steps);
  std::printf("run folder %s: %lld steps, %lld epochs in %.1f s (%.1f train img/s); final eval top-1 %.4f top-5 %.4f\n",
              out.c_str(), (long long)r.steps, (long long)r.epochs_completed, r.seconds, r.train_images_per_second,
              r.final_eval.top1, r.final_eval.top5);
  std::printf("weights %s/model.h5, checkpoints %s/checkpoints/, curves: unirep plot %s\n", out.c_str(), out.c_str(),
              out.c_str());
  return 0;
}

int command_eval(int argc, char** argv) {
  Args args(argc, argv, 2, {"--config", "--checkpoint", "--set"}, {"--json", "--ema"});
  TrainConfig config = load_train_config(args.require("--config"), args.get_all("--set"));
  const std::string checkpoint = args.require("--checkpoint");
  EvalMetrics m = evaluate_checkpoint(config, checkpoint, args.flag("--ema"));
  if (args.flag("--json")) {
    std::printf("{\"top1\": %.6f, \"top5\": %.6f, \"loss\": %.6f, \"images\": %lld}\n", m.top1, m.top5, m.loss,
                (long long)m.images);
  } else {
    std::printf("%s on %s split '%s': top-1 %.4f  top-5 %.4f  loss %.4f  (%lld images)\n", checkpoint.c_str(),
                config.data.path.c_str(), config.data.eval_split.c_str(), m.top1, m.top5, m.loss, (long long)m.images);
  }
  return 0;
}

}  // namespace unirep
