// HDF5 and durable-file helpers (see core/hdf5_util.h).
#include "core/hdf5_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace unirep {

std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex m;
  return m;
}

H5Scope::H5Scope() : lock_(hdf5_mutex()) {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

H5Scope::~H5Scope() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

namespace {
herr_t innermost_error(unsigned n, const H5E_error2_t* err, void* data) {
  if (n == 0 && err && err->desc) *static_cast<std::string*>(data) = err->desc;
  return 0;
}
}  // namespace

std::string hdf5_error_detail() {
  std::string desc;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, &desc);
  return desc.empty() ? std::string() : " (HDF5: " + desc + ")";
}

void fsync_path(const std::string& path, bool directory, const std::string& context) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  UNIREP_CHECK(fd >= 0, context, "cannot open '", path, "' to fsync it: ", std::strerror(errno));
  int r = ::fsync(fd);
  int err = errno;
  ::close(fd);
  UNIREP_CHECK(r == 0, context, "fsync of '", path, "' failed: ", std::strerror(err));
}

std::string parent_directory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

void write_file_atomically(const std::string& path, const std::string& contents, const std::string& context) {
  const std::string tmp = temp_path_for(path);
  try {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    UNIREP_CHECK(f, context, "cannot create '", tmp, "': ", std::strerror(errno));
    size_t written = std::fwrite(contents.data(), 1, contents.size(), f);
    int err = errno;
    bool closed = std::fclose(f) == 0;
    UNIREP_CHECK(written == contents.size() && closed, context, "cannot write '", tmp, "': ", std::strerror(err));
    fsync_path(tmp, false, context);
    UNIREP_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, context, "cannot rename '", tmp, "' to '", path,
                 "': ", std::strerror(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_path(parent_directory(path), true, context);
}

}  // namespace unirep
