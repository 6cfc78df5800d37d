// `unirep data ...`: dataset conversion and inspection (datasets/convert.h); wired into launch/main.cpp.
#pragma once

namespace unirep {

// argv[1] == "data", argv[2] the subcommand:
//   convert KIND SRC DST [--shards N] [--workers W] [--skip-corrupt] [--overwrite]
//   inspect DIR [--verify]
// Returns the process exit code (inspect --verify: 1 when it found problems).
int data_command(int argc, char** argv);

// The usage lines of `unirep data`, for the CLI's help text.
const char* data_usage();

}  // namespace unirep
