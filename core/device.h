// Where a tensor lives. CUDA devices are numbered as the runtime numbers them.
#pragma once
#include <cstdint>
#include <string>

namespace unirep {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// Number of usable CUDA devices; 0 when the driver or a GPU is missing (never throws).
int cuda_device_count();
inline bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace unirep
