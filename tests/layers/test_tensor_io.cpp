// HDF5 tensor files (layers/tensor_io.h): round trips of every dtype, order, attributes, atomic
// overwrite, error messages, files written by other HDF5 writers (raw C API here, h5py when present).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "autograd/ops.h"
#include "core/generator.h"
#include "layers/tensor_io.h"

namespace unirep {
namespace {

namespace fs = std::filesystem;

class TensorIo : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("unirep_tensor_io_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  // Every entry of the test directory (to catch left-over temp files).
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  fs::path dir_;
};

std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor c = t.cpu().contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return std::vector<uint8_t>(p, p + c.numel() * c.element_size());
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Same names in the same order, same dtypes, shapes and bits.
void expect_same(const NamedTensors& actual, const NamedTensors& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].first);
    EXPECT_EQ(actual[i].first, expected[i].first);
    const Tensor& a = actual[i].second;
    const Tensor& e = expected[i].second;
    EXPECT_EQ(a.dtype(), e.dtype());
    EXPECT_EQ(a.shape(), e.shape());
    EXPECT_TRUE(a.device().is_cpu());
    EXPECT_TRUE(a.is_contiguous());
    EXPECT_EQ(bytes_of(a), bytes_of(e));
  }
}

template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a unirep::Error";
  return "";
}

NamedTensors every_dtype() {
  return {
      {"stem.0.weight", Tensor::from_vector(std::vector<float>{0.5f, -1.25f, 3.0e38f, -0.0f, 1e-40f, 7.0f},
                                            {2, 1, 3})},
      {"stem.1.running_var", Tensor::from_vector(std::vector<double>{1.0 / 3.0, -1e300, 4.9e-324}, {3})},
      {"stem.1.num_batches_tracked", Tensor::scalar(12345678901234.0, DType::Int64)},
      {"head.weight", Tensor::from_vector(std::vector<float>{0.5f, -2.0f, 65504.0f, 5.96e-8f}, {2, 2},
                                          DType::Float16)},
      {"head.bias", Tensor::from_vector(std::vector<float>{1.0f, -2.5f, 3.0e38f, 1.0f / 3.0f}, {4},
                                        DType::BFloat16)},
      {"index", Tensor::from_vector(std::vector<int32_t>{-2147483647 - 1, 0, 2147483647}, {3})},
      {"mask", Tensor::from_vector(std::vector<uint8_t>{0, 127, 255}, {1, 3})},
      {"empty", Tensor::zeros({0, 4})},
      {"empty.bf16", Tensor::zeros({3, 0}, DType::BFloat16)},
  };
}

TEST_F(TensorIo, RoundTripsEveryDtypeShapeAndScalar) {
  NamedTensors tensors = every_dtype();
  save_tensors(file("sd.h5"), tensors);
  NamedTensors loaded = load_tensors(file("sd.h5"));
  expect_same(loaded, tensors);
  EXPECT_EQ(loaded[2].second.dim(), 0);
  EXPECT_EQ(loaded[2].second.item(), 12345678901234.0);
  EXPECT_EQ(loaded[4].second.to_vector<float>()[1], -2.5f);
  EXPECT_EQ(entries(), (std::vector<std::string>{"sd.h5"}));
  EXPECT_TRUE(hdf5_file_exists_and_valid(file("sd.h5")));
}

TEST_F(TensorIo, KeepsStateDictOrderAndAttributes) {
  NamedTensors tensors;
  for (const char* name : {"stages.10.weight", "stages.2.weight", "z", "a", "head.bias", "A.b"}) {
    tensors.emplace_back(name, Tensor::full({2}, double(tensors.size())));
  }
  std::map<std::string, std::string> attrs{
      {"format", "unirep-state-dict"}, {"version", "1"}, {"model", "a"}, {"empty", ""}, {"utf8", "µ→ok"}};
  save_tensors(file("ordered.h5"), tensors, attrs);
  expect_same(load_tensors(file("ordered.h5")), tensors);
  EXPECT_EQ(load_attributes(file("ordered.h5")), attrs);
  save_tensors(file("plain.h5"), tensors);
  EXPECT_TRUE(load_attributes(file("plain.h5")).empty());
}

TEST_F(TensorIo, WritesViewsAndExpandedTensorsAsTheirValues) {
  Generator gen(3);
  Tensor base = Tensor::randn({4, 5, 6}, gen);
  NamedTensors views{{"permuted", base.permute({2, 0, 1})},
                     {"sliced", base.slice(1, 1, 4).select(2, 3)},
                     {"expanded", Tensor::from_vector(std::vector<float>{1, 2}, {2, 1}).expand({2, 3})}};
  save_tensors(file("views.h5"), views);
  NamedTensors expected;
  for (const auto& [name, t] : views) expected.emplace_back(name, t.contiguous());
  expect_same(load_tensors(file("views.h5")), expected);
}

TEST_F(TensorIo, EqualContentsGiveEqualBytes) {
  save_tensors(file("a.h5"), every_dtype(), {{"format", "unirep-state-dict"}});
  // Across a second boundary: the root group must not carry timestamps either.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  save_tensors(file("b.h5"), every_dtype(), {{"format", "unirep-state-dict"}});
  EXPECT_EQ(file_bytes(file("a.h5")), file_bytes(file("b.h5")));
}

TEST_F(TensorIo, FailedOverwriteLeavesTheOldFileAndNoTempFile) {
  const std::string path = file("ckpt.h5");
  NamedTensors good{{"w", Tensor::full({3}, 1.5)}};
  save_tensors(path, good, {{"step", "1"}});
  const std::vector<uint8_t> before = file_bytes(path);

  // The first tensor is already in the temp file when the second fails.
  NamedTensors bad{{"w", Tensor::full({3}, 9.0)}, {"layer/weight", Tensor::zeros({2})}};
  std::string msg = error_of([&] { save_tensors(path, bad, {{"step", "2"}}); });
  EXPECT_NE(msg.find("save_tensors: tensor file '" + path + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'layer/weight' contains '/'"), std::string::npos) << msg;

  msg = error_of([&] { save_tensors(path, {{"w", Tensor::zeros({1})}, {"w", Tensor::zeros({1})}}); });
  EXPECT_NE(msg.find("tensor name 'w' appears twice"), std::string::npos) << msg;
  msg = error_of([&] { save_tensors(path, {{"w", Tensor()}}); });
  EXPECT_NE(msg.find("tensor 'w' is undefined"), std::string::npos) << msg;
  msg = error_of([&] { save_tensors(path, {{"", Tensor::zeros({1})}}); });
  EXPECT_NE(msg.find("tensor #0 has an empty name"), std::string::npos) << msg;

  EXPECT_EQ(file_bytes(path), before);
  expect_same(load_tensors(path), good);
  EXPECT_EQ(load_attributes(path).at("step"), "1");
  EXPECT_EQ(entries(), (std::vector<std::string>{"ckpt.h5"}));

  // A successful overwrite replaces the file.
  NamedTensors next{{"w", Tensor::full({3}, 2.5)}, {"b", Tensor::zeros({1})}};
  save_tensors(path, next);
  expect_same(load_tensors(path), next);
  EXPECT_EQ(entries(), (std::vector<std::string>{"ckpt.h5"}));
}

TEST_F(TensorIo, UnwritableDirectoryIsAnError) {
  const std::string path = file("no/such/dir/x.h5");
  std::string msg = error_of([&] { save_tensors(path, {{"w", Tensor::zeros({1})}}); });
  EXPECT_NE(msg.find("tensor file '" + path + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot create the temporary file"), std::string::npos) << msg;
  EXPECT_TRUE(entries().empty());
}

TEST_F(TensorIo, MissingGarbageAndTruncatedFilesAreClearErrors) {
  ::testing::internal::CaptureStderr();
  const std::string missing = file("missing.h5");
  std::string msg = error_of([&] { load_tensors(missing); });
  EXPECT_NE(msg.find("load_tensors: tensor file '" + missing + "' does not exist"), std::string::npos) << msg;
  EXPECT_FALSE(hdf5_file_exists_and_valid(missing));

  const std::string garbage = file("garbage.h5");
  std::ofstream(garbage) << "this is not an HDF5 file, just some text that is long enough to matter\n";
  msg = error_of([&] { load_tensors(garbage); });
  EXPECT_NE(msg.find("tensor file '" + garbage + "' is not an HDF5 file"), std::string::npos) << msg;
  msg = error_of([&] { load_attributes(garbage); });
  EXPECT_NE(msg.find("load_attributes: tensor file '" + garbage + "' is not an HDF5 file"), std::string::npos)
      << msg;
  const std::string empty = file("empty.h5");
  std::ofstream{empty};
  msg = error_of([&] { load_tensors(empty); });
  EXPECT_NE(msg.find("tensor file '" + empty + "' is not an HDF5 file"), std::string::npos) << msg;

  const std::string truncated = file("truncated.h5");
  save_tensors(truncated, every_dtype());
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  msg = error_of([&] { load_tensors(truncated); });
  EXPECT_NE(msg.find("tensor file '" + truncated + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_FALSE(hdf5_file_exists_and_valid(truncated));
  EXPECT_FALSE(hdf5_file_exists_and_valid(garbage));
  EXPECT_FALSE(hdf5_file_exists_and_valid(dir_.string()));
  // HDF5 printed nothing: every failure above came back as an exception only.
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// ---- files from other writers, made with the raw HDF5 C API (as h5py would make them)

// A dataset of `type` in the file, from `data` in `mem_type` (default: `type`).
void write_raw(hid_t file, const char* name, hid_t type, std::vector<hsize_t> dims, const void* data,
               hid_t mem_type = -1) {
  hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  hid_t dset = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(dset, 0) << name;
  ASSERT_GE(H5Dwrite(dset, mem_type < 0 ? type : mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0) << name;
  H5Dclose(dset);
  H5Sclose(space);
}

TEST_F(TensorIo, ReadsForeignIntegerAndFloatTypesByName) {
  const std::string path = file("foreign.h5");
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);  // no creation order
  ASSERT_GE(f, 0);
  const int8_t i8[] = {-128, 0, 127};
  const int16_t i16[] = {-32768, 1, 32767};
  const uint16_t u16[] = {0, 1, 65535};
  const uint32_t u32[] = {0, 4294967295u};
  const uint64_t u64[] = {0, uint64_t(INT64_MAX)};
  const double f64[] = {1.5, -0.25};
  const int64_t i64 = 5;
  write_raw(f, "z.i8", H5T_NATIVE_INT8, {3}, i8);
  write_raw(f, "y.i16", H5T_NATIVE_INT16, {3}, i16);
  write_raw(f, "x.u16", H5T_NATIVE_UINT16, {3}, u16);
  write_raw(f, "w.u32", H5T_NATIVE_UINT32, {2}, u32);
  write_raw(f, "v.u64", H5T_NATIVE_UINT64, {2}, u64);
  write_raw(f, "u.be_f64", H5T_IEEE_F64BE, {2}, f64, H5T_NATIVE_DOUBLE);  // big-endian in the file
  write_raw(f, "t.i64", H5T_NATIVE_INT64, {1}, &i64);
  hid_t g = H5Gcreate2(f, "group", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  write_raw(g, "inside", H5T_NATIVE_INT64, {1}, &i64);
  H5Gclose(g);
  H5Lcreate_soft("/t.i64", f, "soft", H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);

  NamedTensors expected{
      {"t.i64", Tensor::from_vector(std::vector<int64_t>{5}, {1})},
      {"u.be_f64", Tensor::from_vector(std::vector<double>{1.5, -0.25}, {2})},
      {"v.u64", Tensor::from_vector(std::vector<int64_t>{0, INT64_MAX}, {2})},
      {"w.u32", Tensor::from_vector(std::vector<int64_t>{0, 4294967295ll}, {2})},
      {"x.u16", Tensor::from_vector(std::vector<int32_t>{0, 1, 65535}, {3})},
      {"y.i16", Tensor::from_vector(std::vector<int32_t>{-32768, 1, 32767}, {3})},
      {"z.i8", Tensor::from_vector(std::vector<int32_t>{-128, 0, 127}, {3})},
  };
  expect_same(load_tensors(path), expected);  // by name; the group and the soft link are skipped
}

TEST_F(TensorIo, UnsupportedDatasetsAreErrorsNamingThem) {
  ::testing::internal::CaptureStderr();
  auto make = [&](const std::string& path, auto&& fill) {
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    const float ok[] = {1.0f};
    write_raw(f, "a.ok", H5T_NATIVE_FLOAT, {1}, ok);
    fill(f);
    H5Fclose(f);
  };
  const std::string strings = file("strings.h5");
  make(strings, [](hid_t f) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 4);
    write_raw(f, "b.text", t, {2}, "abcdefgh");
    H5Tclose(t);
  });
  std::string msg = error_of([&] { load_tensors(strings); });
  EXPECT_NE(msg.find("tensor file '" + strings + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dataset 'b.text' has an unsupported type: string"), std::string::npos) << msg;

  const std::string compound = file("compound.h5");
  make(compound, [](hid_t f) {
    hid_t t = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(t, "re", 0, H5T_NATIVE_FLOAT);
    H5Tinsert(t, "im", 4, H5T_NATIVE_FLOAT);
    const float v[] = {1, 2};
    write_raw(f, "c.complex", t, {1}, v);
    H5Tclose(t);
  });
  msg = error_of([&] { load_tensors(compound); });
  EXPECT_NE(msg.find("dataset 'c.complex' has an unsupported type: compound"), std::string::npos) << msg;

  const std::string big = file("big_u64.h5");
  make(big, [](hid_t f) {
    const uint64_t v[] = {1, uint64_t(INT64_MAX) + 1};
    write_raw(f, "d.u64", H5T_NATIVE_UINT64, {2}, v);
  });
  msg = error_of([&] { load_tensors(big); });
  EXPECT_NE(msg.find("dataset 'd.u64' (uint64) holds 9223372036854775808 at flat index 1"), std::string::npos)
      << msg;

  const std::string tagged = file("bad_tag.h5");
  make(tagged, [](hid_t f) {
    const float v[] = {1};
    write_raw(f, "e.tagged", H5T_NATIVE_FLOAT, {1}, v);
    hid_t d = H5Dopen2(f, "e.tagged", H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 8);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(d, "unirep_dtype", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "bfloat16");
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    H5Dclose(d);
  });
  msg = error_of([&] { load_tensors(tagged); });
  EXPECT_NE(msg.find("dataset 'e.tagged' has an unsupported type: float of 4 bytes"), std::string::npos) << msg;
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST_F(TensorIo, CompressedDatasetsReadAndCorruptOnesAreErrorsNamingThem) {
  // h5py's create_dataset(..., compression="gzip"): chunked and deflated.
  const std::string path = file("gzip.h5");
  std::vector<float> values(256);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i % 7) - 3.0f;
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hsize_t dims[] = {16, 16};
  hid_t space = H5Screate_simple(2, dims, nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 2, dims);
  H5Pset_deflate(dcpl, 4);
  hid_t dset = H5Dcreate2(f, "w", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(dset, 0);
  ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
  haddr_t chunk_addr = 0;
  hsize_t chunk_size = 0;
  ASSERT_GE(H5Dget_chunk_info(dset, space, 0, nullptr, nullptr, &chunk_addr, &chunk_size), 0);
  H5Dclose(dset);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
  expect_same(load_tensors(path), {{"w", Tensor::from_vector(values, {16, 16})}});

  // Garbage in the deflated chunk: the read fails and says which dataset.
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(std::streamoff(chunk_addr));
    io.write(std::string(size_t(chunk_size), '\x5a').data(), std::streamsize(chunk_size));
  }
  ::testing::internal::CaptureStderr();
  std::string msg = error_of([&] { load_tensors(path); });
  EXPECT_NE(msg.find("load_tensors: tensor file '" + path + "': cannot read dataset 'w' (float32[16, 16] cpu)"),
            std::string::npos)
      << msg;
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST_F(TensorIo, ConcurrentSavesAndLoads) {
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      NamedTensors t{{"w", Tensor::full({64}, double(i))}};
      const std::string path = file(std::to_string(i) + ".h5");
      for (int k = 0; k < 5; ++k) save_tensors(path, t);
      NamedTensors back = load_tensors(path);
      ok[i] = back.size() == 1 && back[0].second.to_vector<float>()[63] == float(i);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, (std::vector<int>{1, 1, 1, 1}));
}

TEST_F(TensorIo, GpuTensorsAreCopiedToTheHost) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator gen(5);
  Tensor w = Tensor::randn({3, 4}, gen);
  NamedTensors tensors{{"w", w.cuda().permute({1, 0})},
                       {"w.bf16", w.to(DType::BFloat16).cuda()},
                       {"steps", Tensor::scalar(3, DType::Int64).cuda()}};
  save_tensors(file("gpu.h5"), tensors);
  NamedTensors expected;
  for (const auto& [name, t] : tensors) expected.emplace_back(name, t.cpu().contiguous());
  expect_same(load_tensors(file("gpu.h5")), expected);
}

// ---- h5py interop: tests/layers/h5py_interop.py writes and checks files from the Python side.

std::string python_with_h5py() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("UNIREP_PYTHON")) candidates.emplace_back(env);
  candidates.insert(candidates.end(), {"python3", "/usr/bin/python3"});
  for (const std::string& py : candidates) {
    if (std::system((py + " -c 'import h5py' >/dev/null 2>&1").c_str()) == 0) return py;
  }
  return "";
}

TEST_F(TensorIo, H5pyInterop) {
  const std::string py = python_with_h5py();
  if (py.empty()) GTEST_SKIP() << "no python3 with h5py (set UNIREP_PYTHON to choose an interpreter)";
  const std::string script = std::string(UNIREP_SOURCE_DIR) + "/tests/layers/h5py_interop.py";
  auto run = [&](const std::string& mode, const std::string& path) {
    return std::system((py + " '" + script + "' " + mode + " '" + path + "'").c_str());
  };

  // C++ writes, h5py checks (dtypes, shapes, values, creation order, attributes).
  const std::string ours = file("ours.h5");
  save_tensors(ours,
               {{"stem.0.weight",
                 Tensor::from_vector(std::vector<float>{-0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 0.75f}, {2, 3})},
                {"stem.1.running_var",
                 Tensor::from_vector(std::vector<double>{0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0}, {4})},
                {"stem.1.num_batches_tracked", Tensor::scalar(7, DType::Int64)},
                {"head.weight", Tensor::from_vector(std::vector<float>{0.5f, -2.0f, 65504.0f}, {3}, DType::Float16)},
                {"head.bias", Tensor::from_vector(std::vector<float>{1.0f, -2.5f}, {2}, DType::BFloat16)},
                {"idx", Tensor::from_vector(std::vector<int32_t>{-1, 0, 5}, {3})},
                {"mask", Tensor::from_vector(std::vector<uint8_t>{0, 200, 255}, {3})},
                {"empty", Tensor::zeros({0, 4})}},
               {{"format", "unirep-state-dict"}, {"version", "1"}, {"model", "a"}});
  EXPECT_EQ(run("read", ours), 0);

  // h5py writes (its defaults: no creation order, so we list by name), C++ checks.
  const std::string theirs = file("theirs.h5");
  ASSERT_EQ(run("write", theirs), 0);
  std::vector<double> f64{0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0};
  NamedTensors expected{
      {"be.f64", Tensor::from_vector(std::vector<double>{1.5, -0.25}, {2})},
      {"empty", Tensor::zeros({0, 4})},
      {"i16", Tensor::from_vector(std::vector<int32_t>{-32768, 1, 32767}, {3})},
      {"i32", Tensor::from_vector(std::vector<int32_t>{-7, 8}, {2, 1})},
      {"i8", Tensor::from_vector(std::vector<int32_t>{-128, 0, 127}, {3})},
      {"num_batches_tracked", Tensor::scalar(42, DType::Int64)},
      {"u16", Tensor::from_vector(std::vector<int32_t>{0, 1, 65535}, {3})},
      {"u32", Tensor::from_vector(std::vector<int64_t>{0, 4294967295ll}, {2})},
      {"u64", Tensor::from_vector(std::vector<int64_t>{0, INT64_MAX}, {2})},
      {"u8", Tensor::from_vector(std::vector<uint8_t>{0, 200, 255}, {3})},
      {"w.bf16", Tensor::from_vector(std::vector<float>{1.0f, -2.5f, 3.0e38f}, {3}, DType::BFloat16)},
      {"w.f16", Tensor::from_vector(std::vector<float>{0.5f, -2.0f, 65504.0f}, {3}, DType::Float16)},
      {"w.f32", Tensor::from_vector(std::vector<float>{-0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 0.75f}, {2, 3})},
      {"w.f64", Tensor::from_vector(f64, {4})},
  };
  expect_same(load_tensors(theirs), expected);
  EXPECT_EQ(load_attributes(theirs),
            (std::map<std::string, std::string>{{"format", "unirep-state-dict"}, {"version", "1"}, {"model", "a"}}));
}

}  // namespace
}  // namespace unirep
