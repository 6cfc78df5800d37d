// `unirep data convert|inspect` (see datasets/data_command.h).
#include "datasets/data_command.h"

#include <cstdio>
#include <iostream>
#include <string>

#include "core/error.h"
#include "datasets/convert.h"
#include "datasets/dataset_bench.h"
#include "launch/args.h"

namespace unirep {

const char* data_usage() {
  return "  data convert KIND SRC DST [--shards N] [--workers W] [--skip-corrupt] [--overwrite]\n"
         "       convert a dataset to HDF5 shards; KIND = fashion-mnist (SRC: the IDX files, e.g.\n"
         "       /usr/share/datasets/fashion-mnist), imagefolder (SRC/{train,val}/<class>/*.JPEG), coco\n"
         "       (SRC/annotations/instances_{train,val}2017.json, SRC/{train,val}2017/), ade20k\n"
         "       (SRC/{images,annotations}/{training,validation}/); N = shards of the largest split\n"
         "  data inspect DIR [--verify]\n"
         "       print a dataset's manifest and per-class counts; --verify checks every shard's checksum\n"
         "       and reads every record\n"
         "  data bench DIR [--split train] [--workers W] [--images N] [--batch B] [--min-per-core R]\n"
         "       images/s of the full ImageNet train pipeline at 224 (read, decode, augment, batch) over an\n"
         "       encoded dataset; exit 1 when below R images per CPU-second\n"
         "  data synth DST [--count N] [--shards S] [--overwrite]\n"
         "       an encoded dataset of N synthetic 500x375 photo-like JPEGs (for the bench and tests)\n";
}

namespace {

int convert(int argc, char** argv) {
  Args args(argc, argv, 3, {"--shards", "--workers"}, {"--skip-corrupt", "--overwrite"});
  const auto& pos = args.positional();
  UNIREP_CHECK(pos.size() == 3, "unirep data convert: expected KIND SRC DST, got ", pos.size(), " arguments");
  ConvertOptions o;
  o.shards = args.get_int("--shards", 0);
  o.workers = int(args.get_int("--workers", 0));
  UNIREP_CHECK(o.shards >= 0 && o.workers >= 0, "unirep data convert: --shards and --workers must be >= 0");
  o.skip_corrupt = args.flag("--skip-corrupt");
  o.overwrite = args.flag("--overwrite");
  o.log = &std::cout;
  ConvertReport r = convert_dataset(pos[0], pos[1], pos[2], o);
  int64_t skipped = 0;
  for (const auto& [split, n] : r.skipped) skipped += n;
  std::printf("[data] wrote %s (%zu splits) in %.1f s", pos[2].c_str(), r.manifest.splits.size(), r.seconds);
  if (skipped) std::printf(", %lld corrupt source files skipped", static_cast<long long>(skipped));
  std::printf("\n");
  return 0;
}

int inspect(int argc, char** argv) {
  Args args(argc, argv, 3, {}, {"--verify"});
  const auto& pos = args.positional();
  UNIREP_CHECK(pos.size() == 1, "unirep data inspect: expected DIR, got ", pos.size(), " arguments");
  const int64_t problems = inspect_dataset(pos[0], args.flag("--verify"), std::cout);
  std::cout.flush();
  return problems == 0 ? 0 : 1;
}

int bench(int argc, char** argv) {
  Args args(argc, argv, 3, {"--split", "--workers", "--images", "--batch", "--min-per-core"}, {});
  const auto& pos = args.positional();
  UNIREP_CHECK(pos.size() == 1, "unirep data bench: expected DIR, got ", pos.size(), " arguments");
  DatasetBenchResult r = dataset_bench(pos[0], args.get("--split", "train"), int(args.get_int("--workers", 0)),
                                       args.get_int("--images", 2000), args.get_int("--batch", 32), true);
  double floor = args.get_double("--min-per-core", 0);
  if (r.per_cpu_second < floor) {
    std::fprintf(stderr, "data bench: %.0f images per CPU-second, below the required %.0f\n", r.per_cpu_second, floor);
    return 1;
  }
  return 0;
}

int synth(int argc, char** argv) {
  Args args(argc, argv, 3, {"--count", "--shards"}, {"--overwrite"});
  const auto& pos = args.positional();
  UNIREP_CHECK(pos.size() == 1, "unirep data synth: expected DST, got ", pos.size(), " arguments");
  int64_t count = args.get_int("--count", 256);
  make_synthetic_dataset(pos[0], count, args.get_int("--shards", 1), args.flag("--overwrite"));
  std::printf("[data] wrote %lld synthetic 500x375 JPEGs to %s\n", (long long)count, pos[0].c_str());
  return 0;
}

}  // namespace

int data_command(int argc, char** argv) {
  const std::string sub = argc > 2 ? argv[2] : "";
  if (sub == "convert") return convert(argc, argv);
  if (sub == "inspect") return inspect(argc, argv);
  if (sub == "bench") return bench(argc, argv);
  if (sub == "synth") return synth(argc, argv);
  std::fprintf(stderr, "unirep data: unknown subcommand '%s'\nusage:\n%s", sub.c_str(), data_usage());
  return 2;
}

}  // namespace unirep
