// `unirep plot RUN_DIR [--out DIR] [--python EXE]`: PNG curves (loss, lr, accuracy) of a run's metrics.jsonl,
// drawn by launch/plot_run.py with matplotlib into RUN_DIR/plots (or DIR).
#pragma once

namespace unirep {

// The exit code of `unirep plot` (and of plot_run.py) when no Python with matplotlib is found, so that scripts and
// tests can tell "cannot plot here" from a failure.
constexpr int kPlotNoMatplotlib = 3;

// Returns the script's exit code; throws unirep::Error naming a missing run folder, metrics.jsonl or script.
int command_plot(int argc, char** argv);

}  // namespace unirep
