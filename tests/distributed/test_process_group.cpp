// Launcher variables, backend choice without a launcher, and the watchdog's abort (death tests).
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "distributed/process_group.h"
#include "distributed/watchdog.h"

namespace unirep {
namespace {

DistributedEnv env_of(const std::map<std::string, std::string>& vars) {
  return read_distributed_env([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(DistributedEnv, NotLaunched) {
  DistributedEnv e = env_of({});
  EXPECT_FALSE(e.launched);
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.size, 1);
}

TEST(DistributedEnv, OpenMpiVariablesComeFirst) {
  DistributedEnv e = env_of({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                             {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                             {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}});
  EXPECT_TRUE(e.launched);
  EXPECT_EQ(e.launcher, "mpirun");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_size, 4);
}

TEST(DistributedEnv, SlurmAndPmix) {
  DistributedEnv e = env_of({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "3"},
                             {"SLURM_NTASKS_PER_NODE", "8"}, {"PMIX_RANK", "3"}});
  EXPECT_EQ(e.launcher, "pmix");
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.size, 16);
  EXPECT_EQ(e.local_rank, 3);
  EXPECT_EQ(e.local_size, 8);
  // "8(x2)" is no plain count: the local size is then only known to be above the local rank.
  DistributedEnv f = env_of({{"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"},
                             {"SLURM_NTASKS_PER_NODE", "8(x2)"}});
  EXPECT_EQ(f.launcher, "slurm");
  EXPECT_EQ(f.local_size, 2);
}

TEST(DistributedEnv, BadValuesNameTheVariable) {
  try {
    env_of({{"OMPI_COMM_WORLD_RANK", "x1"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("OMPI_COMM_WORLD_RANK must be a non-negative integer, got 'x1'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(env_of({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "2"}}), Error);
  EXPECT_THROW(env_of({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"PMIX_RANK", "0"}}), Error);
}

TEST(MakeCommunicator, WithoutALauncherAutoIsSingle) {
  if (read_distributed_env().launched) GTEST_SKIP() << "runs under a launcher";
  auto comm = make_communicator("auto", Device::cpu());
  EXPECT_EQ(comm->backend(), "single");
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(make_communicator("none", Device::cpu())->backend(), "single");
  EXPECT_THROW(make_communicator("gloo", Device::cpu()), Error);
  EXPECT_THROW(make_communicator("mpi", Device::cuda(0)), Error);
  EXPECT_THROW(make_communicator("auto", Device::cpu(), 0), Error);
}

TEST(WatchdogDeathTest, AbortsWhenACollectiveOutlivesTheTimeout) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Watchdog dog(3, 0.2, [] { std::fprintf(stderr, "backend aborted\n"); });
        dog.end(dog.begin("barrier"));
        dog.begin("all_reduce sum of float32[4] cpu");
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(1),
      "rank 3: all_reduce sum of float32\\[4\\] cpu did not complete within 0.2 s \\(collective #2\\); "
      "aborting\nbackend aborted");
}

TEST(WatchdogDeathTest, PolledCollectivesAndAsyncErrors) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Watchdog dog(1, 0.2, {});
        dog.track("all_reduce_async avg of float32[8] cuda:0", [] { return false; });
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(1), "rank 1: all_reduce_async avg of float32\\[8\\] cuda:0 did not complete");
  EXPECT_EXIT(
      {
        std::atomic<bool> broken{false};
        Watchdog dog(0, 2, {}, [&]() -> std::string { return broken ? "NCCL asynchronous error 'remote'" : ""; });
        dog.track("broadcast from rank 0 of float32[2] cuda:0", [] { return true; });
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        broken = true;
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(1), "rank 0: NCCL asynchronous error 'remote' \\(after collective #1\\); aborting");
}

// The poll of a GPU collective can itself block behind a stuck GPU (cudaEventQuery did, with a
// stalled NCCL peer on two H100s): the deadline still fires.
TEST(WatchdogDeathTest, FiresWhileAPollBlocks) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        Watchdog dog(0, 0.3, {}, [] { return std::string(); });
        dog.track("all_reduce_async avg of float32[8] cuda:0", [] {
          for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
          return false;
        });
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(1), "rank 0: all_reduce_async avg of float32\\[8\\] cuda:0 did not complete within 0.3 s");
}

// Retiring a finished GPU collective destroys its event, which can block too (cudaEventDestroy did,
// behind the same stalled peer): that must not hold up the deadline of the collective still pending.
TEST(WatchdogDeathTest, FiresWhileRetiringAFinishedCollectiveBlocks) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  struct BlocksWhenDestroyed {
    ~BlocksWhenDestroyed() {
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  };
  EXPECT_EXIT(
      {
        Watchdog dog(1, 0.3, {});
        auto event = std::make_shared<BlocksWhenDestroyed>();
        dog.track("all_reduce_async avg of float32[4] cuda:0", [event] { return true; });
        event.reset();
        dog.track("all_reduce_async avg of float32[8] cuda:0", [] { return false; });
        std::this_thread::sleep_for(std::chrono::seconds(5));
      },
      testing::ExitedWithCode(1), "rank 1: all_reduce_async avg of float32\\[8\\] cuda:0 did not complete within 0.3 s");
}

TEST(Watchdog, QuietWhileCollectivesComplete) {
  Watchdog dog(0, 0.05, [] { std::abort(); });
  std::atomic<int> polls{0};
  dog.track("done at once", [&] { return ++polls > 0; });
  for (int i = 0; i < 20; ++i) dog.end(dog.begin("quick"));
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  EXPECT_EQ(dog.collectives(), 21u);
  EXPECT_GE(polls.load(), 1);
}

}  // namespace
}  // namespace unirep
