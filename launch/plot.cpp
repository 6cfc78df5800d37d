// `unirep plot`: finds the plotting script and a Python that can import matplotlib, then hands over to them.
// The script is looked for at $UNIREP_PLOT_SCRIPT, in the source tree this binary was built from, next to the
// binary, and in launch/ above the binary's folder (a build folder inside a copied checkout).
#include "launch/plot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/args.h"

extern char** environ;

namespace unirep {

namespace fs = std::filesystem;

namespace {

constexpr int kCannotStart = -1;

// Runs argv (argv[0] looked up on PATH) and waits for it: its exit code, 128 + the signal that ended it, or
// kCannotStart. With quiet set its output goes to /dev/null.
int run_process(const std::vector<std::string>& argv, bool quiet) {
  std::vector<char*> c_argv;
  for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (quiet) {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  std::fflush(nullptr);  // what this process printed comes before the child's output
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, c_argv[0], &actions, nullptr, c_argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return kCannotStart;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return kCannotStart;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string find_script() {
  if (const char* env = std::getenv("UNIREP_PLOT_SCRIPT"); env && *env) {
    UNIREP_CHECK(fs::is_regular_file(env), "unirep plot: UNIREP_PLOT_SCRIPT names '", env, "', which does not exist");
    return env;
  }
  std::vector<fs::path> candidates;
#ifdef UNIREP_SOURCE_DIR
  candidates.push_back(fs::path(UNIREP_SOURCE_DIR) / "launch" / "plot_run.py");
#endif
  std::error_code ec;
  const fs::path binary_folder = fs::read_symlink("/proc/self/exe", ec).parent_path();
  if (!ec) {
    candidates.push_back(binary_folder / "plot_run.py");
    candidates.push_back(binary_folder.parent_path() / "launch" / "plot_run.py");
  }
  std::string looked;
  for (const fs::path& candidate : candidates) {
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
    looked += (looked.empty() ? "'" : ", '") + candidate.string() + "'";
  }
  throw Error("unirep plot: cannot find the plotting script plot_run.py (looked at " + looked +
              "); set UNIREP_PLOT_SCRIPT to its path");
}

}  // namespace

int command_plot(int argc, char** argv) {
  Args args(argc, argv, 2, {"--out", "--python"}, {});
  UNIREP_CHECK(args.positional().size() == 1, "usage: unirep plot RUN_DIR [--out DIR] [--python EXE]");
  const std::string run_dir = args.positional()[0];
  UNIREP_CHECK(fs::is_directory(run_dir), "unirep plot: run folder '", run_dir, "' does not exist");
  const std::string metrics = (fs::path(run_dir) / "metrics.jsonl").string();
  UNIREP_CHECK(fs::is_regular_file(metrics), "unirep plot: '", metrics,
               "' does not exist (is this a run folder? training writes its metrics there)");
  const std::string script = find_script();

  // Plain `python3` may be a virtual environment or pyenv shim without matplotlib, so each one is asked.
  const std::vector<std::string> pythons =
      args.has("--python") ? std::vector<std::string>{args.get("--python", "")}
                           : std::vector<std::string>{"python3", "/usr/bin/python3"};
  std::string python, tried;
  for (const std::string& candidate : pythons) {
    const int rc = run_process({candidate, "-c", "import matplotlib"}, /*quiet=*/true);
    if (rc == 0) {
      python = candidate;
      break;
    }
    tried += (tried.empty() ? "" : ", ") + candidate + (rc == kCannotStart ? " (cannot be run)" : " (no matplotlib)");
  }
  if (python.empty()) {
    std::fprintf(stderr,
                 "unirep plot: no Python with matplotlib (tried %s): apt-get install python3-matplotlib, or pip "
                 "install matplotlib%s\n",
                 tried.c_str(), args.has("--python") ? "" : ", or name a Python that has it with --python");
    return kPlotNoMatplotlib;
  }

  std::vector<std::string> command = {python, script, run_dir};
  if (args.has("--out")) command.insert(command.end(), {"--out", args.get("--out", "")});
  const int rc = run_process(command, /*quiet=*/false);
  UNIREP_CHECK(rc != kCannotStart, "unirep plot: cannot run '", python, "'");
  return rc;
}

}  // namespace unirep
