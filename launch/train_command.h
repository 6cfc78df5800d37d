// `unirep train` and `unirep eval`: the command-line faces of launch/trainer.h.
#pragma once

namespace unirep {

const char* train_usage();
int command_train(int argc, char** argv);
int command_eval(int argc, char** argv);

}  // namespace unirep
