// The model-level subcommands:
//   info     parameter count and multiply-accumulates of a variant (spec 11's counting rule)
//   reparam  training-structure checkpoint -> deploy-structure checkpoint (spec 5)
//   predict  eval-mode logits of a stored input batch (PyTorch's NCHW layout in, [N, classes] out)
#include "launch/model_commands.h"

#include <cstdio>
#include <string>

#include "launch/args.h"
#include "layers/tensor_io.h"
#include "layers/unireplknet/model.h"

namespace unirep {

namespace {

UniRepLKNetConfig config_from_flags(const Args& args) {
  UniRepLKNetConfig c = unireplknet_variant(args.get("--model", "t"));
  c.deploy = args.flag("--deploy");
  c.num_classes = args.get_int("--num-classes", 1000);
  c.in_chans = args.get_int("--in-chans", 3);
  UNIREP_CHECK(c.num_classes > 0, "--num-classes must be positive, got ", c.num_classes);
  UNIREP_CHECK(c.in_chans > 0, "--in-chans must be positive, got ", c.in_chans);
  return c;
}

Device device_from_flags(const Args& args) {
  std::string d = args.get("--device", "auto");
  UNIREP_CHECK(d == "auto" || d == "cpu" || d == "cuda", "--device expects auto, cpu or cuda, got '", d, "'");
  if (d == "cuda") UNIREP_CHECK(cuda_available(), "--device cuda: no CUDA GPU is available");
  return d == "cuda" || (d == "auto" && cuda_available()) ? Device::cuda() : Device::cpu();
}

Tensor find(const NamedTensors& tensors, const std::string& name, const std::string& path) {
  for (auto& [n, t] : tensors)
    if (n == name) return t;
  throw Error("'" + path + "' has no dataset '" + name + "'");
}

}  // namespace

int command_info(int argc, char** argv) {
  Args args(argc, argv, 2, {"--model", "--image-size", "--num-classes", "--in-chans"}, {"--deploy", "--json", "--list"});
  UniRepLKNetConfig c = config_from_flags(args);
  int64_t size = args.get_int("--image-size", 224);
  UNIREP_CHECK(size >= 1, "--image-size must be positive, got ", size);
  UniRepLKNet model(c);
  int64_t params = model.num_parameters(), macs = model.macs(size, size);
  if (args.flag("--list")) {
    for (auto& [name, t] : model.state_dict()) std::printf("%s %s\n", name.c_str(), shape_str(t.shape()).c_str());
  }
  if (args.flag("--json")) {
    std::printf("{\"model\": \"%s\", \"deploy\": %s, \"image_size\": %lld, \"num_classes\": %lld, \"params\": %lld, "
                "\"macs\": %lld}\n",
                c.name.c_str(), c.deploy ? "true" : "false", (long long)size, (long long)c.num_classes,
                (long long)params, (long long)macs);
  } else {
    std::printf("UniRepLKNet-%s (%s structure), %lld classes, %lldx%lld input: %lld parameters (%.2f M), "
                "%lld multiply-accumulates (%.2f G)\n",
                c.name.c_str(), c.deploy ? "deploy" : "training", (long long)c.num_classes, (long long)size,
                (long long)size, (long long)params, params / 1e6, (long long)macs, macs / 1e9);
  }
  return 0;
}

int command_reparam(int argc, char** argv) {
  Args args(argc, argv, 2, {}, {});
  UNIREP_CHECK(args.positional().size() == 2, "usage: unirep reparam IN.h5 OUT.h5");
  const std::string in = args.positional()[0], out = args.positional()[1];
  NamedTensors state = load_tensors(in);
  UniRepLKNetConfig c = config_from_state_dict(state);
  UNIREP_CHECK(!c.deploy, "reparam: '", in, "' already holds a deploy-structure model");
  UniRepLKNet model(c);
  model.to(state.front().second.dtype() == DType::Float64 ? DType::Float64 : DType::Float32);
  model.load_state_dict(state);
  model.eval();
  std::shared_ptr<UniRepLKNet> deploy = model.reparameterized();
  save_tensors(out, deploy->state_dict(), {{"format", "unirep-state-dict"}, {"version", "1"}, {"model", c.name},
                                           {"structure", "deploy"}});
  std::printf("reparam: %s (%lld parameters, training structure) -> %s (%lld parameters, deploy structure)\n",
              in.c_str(), (long long)model.num_parameters(), out.c_str(), (long long)deploy->num_parameters());
  return 0;
}

int command_predict(int argc, char** argv) {
  Args args(argc, argv, 2, {"--model", "--num-classes", "--in-chans", "--checkpoint", "--input", "--output", "--device"},
            {"--deploy"});
  UniRepLKNetConfig c = config_from_flags(args);
  const std::string ckpt = args.require("--checkpoint"), in = args.require("--input"), out = args.require("--output");
  UniRepLKNet model(c);
  NamedTensors state = load_tensors(ckpt);
  try {
    model.load_state_dict(state);
  } catch (const Error& e) {
    throw Error("predict: checkpoint '" + ckpt + "' does not fit UniRepLKNet-" + c.name +
                (c.deploy ? " (deploy)" : " (training structure)") + ": " + e.what());
  }
  Device device = device_from_flags(args);
  model.to(device);
  model.eval();
  NamedTensors inputs = load_tensors(in);
  Tensor x = find(inputs, "input", in);
  UNIREP_CHECK(x.dim() == 4 && x.size(1) == c.in_chans, "predict: 'input' in '", in, "' must be [N, ", c.in_chans,
               ", H, W] (NCHW), got ", shape_str(x.shape()));
  NoGradGuard no_grad;
  Tensor nhwc = x.to(DType::Float32).permute({0, 2, 3, 1}).contiguous().to(device);
  Tensor logits = model.forward(nhwc).to(DType::Float32).cpu();
  save_tensors(out, {{"logits", logits}});
  std::printf("predict: %lld images -> %s [%lld, %lld]\n", (long long)x.size(0), out.c_str(), (long long)logits.size(0),
              (long long)logits.size(1));
  return 0;
}

}  // namespace unirep
