// Shared helpers for the HDF5 C API (tensor files in layers/tensor_io, dataset shards in datasets/)
// and for durable file replacement.
//
// HDF5: every call into the library goes through one process-wide mutex, hdf5_mutex(). Debian's and
// Ubuntu's libhdf5 are built thread-safe (one global lock inside the library), but a build need not
// be, so all our HDF5 users share this one mutex; the library lock then never sees contention from
// our threads. H5Scope holds the mutex and switches HDF5's automatic error printing off for its
// lifetime, so expected failures never reach stderr; failures are reported through unirep::Error with
// hdf5_error_detail() (the innermost message of the HDF5 error stack). H5Id owns an identifier.
//
// Files: fsync_path and parent_directory support the write-to-temp, fsync, rename, fsync-directory
// sequence that both writers use; temp_path_for gives a name unique per process and call.
#pragma once
#include <mutex>
#include <string>

#include <hdf5.h>

namespace unirep {

// The mutex that serialises every HDF5 call made by unirep (recursive: scopes may nest).
std::recursive_mutex& hdf5_mutex();

// Holds hdf5_mutex() and silences HDF5's automatic error stack printing for the scope. Declare it
// before any H5Id so that handles close while it is still active.
class H5Scope {
 public:
  H5Scope();
  ~H5Scope();
  H5Scope(const H5Scope&) = delete;
  H5Scope& operator=(const H5Scope&) = delete;

 private:
  std::lock_guard<std::recursive_mutex> lock_;
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// An owned HDF5 identifier, closed with the function that matches its kind (H5Fclose, H5Dclose, ...).
// Close it while holding hdf5_mutex().
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  H5Id(H5Id&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = -1;
    }
    return *this;
  }
  ~H5Id() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and returns the status (the destructor ignores it).
  herr_t close() {
    herr_t r = id_ >= 0 ? closer_(id_) : 0;
    id_ = -1;
    return r;
  }

 private:
  void reset() {
    if (id_ >= 0) closer_(id_);
    id_ = -1;
  }
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// " (HDF5: <innermost description>)" from the current thread's HDF5 error stack, or "" when empty.
std::string hdf5_error_detail();

// fsync of a file (directory = false) or a folder; throws unirep::Error starting with `context`.
void fsync_path(const std::string& path, bool directory, const std::string& context);

// The folder holding `path` ("." when it has none).
std::string parent_directory(const std::string& path);

// `path` + ".tmp.<pid>.<n>", n counting calls in this process: never shared by concurrent writers.
std::string temp_path_for(const std::string& path);

// Writes `contents` to a temp file next to `path`, fsyncs it, renames it over `path` and fsyncs
// the folder. On failure the temp file is removed and `path` is left as it was.
void write_file_atomically(const std::string& path, const std::string& contents, const std::string& context);

}  // namespace unirep
