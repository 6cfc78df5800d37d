// `unirep data convert|inspect` (see datasets/data_command.h).
#include "datasets/data_command.h"

#include <cstdio>
#include <iostream>
#include <string>

#include "core/error.h"
#include "datasets/convert.h"
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
         "       and reads every record\n";
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

}  // namespace

int data_command(int argc, char** argv) {
  const std::string sub = argc > 2 ? argv[2] : "";
  if (sub == "convert") return convert(argc, argv);
  if (sub == "inspect") return inspect(argc, argv);
  std::fprintf(stderr, "unirep data: unknown subcommand '%s'\nusage:\n%s", sub.c_str(), data_usage());
  return 2;
}

}  // namespace unirep
