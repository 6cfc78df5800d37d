// `unirep info`, `unirep reparam` and `unirep predict` (see model_commands.cpp).
#pragma once

namespace unirep {
int command_info(int argc, char** argv);
int command_reparam(int argc, char** argv);
int command_predict(int argc, char** argv);
}  // namespace unirep
