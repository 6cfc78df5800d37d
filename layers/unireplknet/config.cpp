#include "layers/unireplknet/config.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace unirep {

const std::vector<std::string>& unireplknet_variant_names() {
  static const std::vector<std::string> names = {"a", "f", "p", "n", "t", "s", "b", "l", "xl"};
  return names;
}

UniRepLKNetConfig unireplknet_variant(const std::string& requested) {
  std::string v = requested;
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  UniRepLKNetConfig c;
  c.name = v;
  const std::vector<int64_t> small = {2, 2, 6, 2}, nano = {2, 2, 8, 2}, tiny = {3, 3, 18, 3}, big = {3, 3, 27, 3};
  if (v == "a") c.depths = small, c.dims = {40, 80, 160, 320};
  else if (v == "f") c.depths = small, c.dims = {48, 96, 192, 384};
  else if (v == "p") c.depths = small, c.dims = {64, 128, 256, 512};
  else if (v == "n") c.depths = nano, c.dims = {80, 160, 320, 640};
  else if (v == "t") c.depths = tiny, c.dims = {80, 160, 320, 640};
  else if (v == "s") c.depths = big, c.dims = {96, 192, 384, 768};
  else if (v == "b") c.depths = big, c.dims = {128, 256, 512, 1024};
  else if (v == "l") c.depths = big, c.dims = {192, 384, 768, 1536};
  else if (v == "xl") c.depths = big, c.dims = {256, 512, 1024, 2048};
  else throw Error("unireplknet: unknown variant '" + requested + "' (expected one of a, f, p, n, t, s, b, l, xl)");
  c.kernel_sizes = default_kernel_sizes(c.depths);
  return c;
}

std::vector<std::vector<int64_t>> default_kernel_sizes(const std::vector<int64_t>& depths) {
  UNIREP_CHECK(depths.size() == 4, "unireplknet: expected 4 stage depths, got ", to_string(depths));
  const int64_t lark = 13, smak = 3;
  std::vector<int64_t> stage2(static_cast<size_t>(depths[2]));
  if (depths == std::vector<int64_t>{2, 2, 6, 2} || depths == std::vector<int64_t>{2, 2, 8, 2}) {
    std::fill(stage2.begin(), stage2.end(), lark);
  } else if (depths == std::vector<int64_t>{3, 3, 18, 3}) {
    for (size_t j = 0; j < stage2.size(); ++j) stage2[j] = j % 2 == 0 ? lark : smak;
  } else if (depths == std::vector<int64_t>{3, 3, 27, 3}) {
    for (size_t j = 0; j < stage2.size(); ++j) stage2[j] = j % 3 == 0 ? lark : smak;
  } else {
    throw Error("unireplknet: no default kernel sizes for depths " + to_string(depths) +
                "; give kernel_sizes explicitly");
  }
  return {std::vector<int64_t>(size_t(depths[0]), smak), std::vector<int64_t>(size_t(depths[1]), lark), stage2,
          std::vector<int64_t>(size_t(depths[3]), lark)};
}

std::vector<std::pair<int64_t, int64_t>> dilated_branches(int64_t K) {
  switch (K) {
    case 5: return {{3, 1}, {3, 2}};
    case 7: return {{5, 1}, {3, 2}, {3, 3}};
    case 9: return {{5, 1}, {5, 2}, {3, 3}, {3, 4}};
    case 11: return {{5, 1}, {5, 2}, {3, 3}, {3, 4}, {3, 5}};
    case 13: return {{5, 1}, {7, 2}, {3, 3}, {3, 4}, {3, 5}};
    case 15: return {{5, 1}, {7, 2}, {3, 3}, {3, 5}, {3, 7}};
    case 17: return {{5, 1}, {9, 2}, {3, 4}, {3, 5}, {3, 7}};
    default: throw Error(detail::concat("DilatedReparamBlock: kernel size ", K, " unsupported (expected 5..17, odd)"));
  }
}

}  // namespace unirep
