// convert_dataset: the converters by name (datasets/convert.h).
#include "datasets/convert.h"

#include "core/error.h"

namespace unirep {

ConvertReport convert_dataset(const std::string& kind, const std::string& src, const std::string& dst,
                              const ConvertOptions& options) {
  if (kind == "fashion-mnist") return convert_fashion_mnist(src, dst, options);
  if (kind == "imagefolder") return convert_imagefolder(src, dst, options);
  if (kind == "coco") return convert_coco(src, dst, options);
  if (kind == "ade20k") return convert_ade20k(src, dst, options);
  throw Error("unirep data convert: unknown dataset kind '" + kind + "' (expected fashion-mnist, imagefolder, coco or ade20k)");
}

}  // namespace unirep
