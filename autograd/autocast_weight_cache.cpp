// AutocastWeightCache (autograd/autocast_weight_cache.h): one buffer, cast_multi into it, lookups by
// the parameter's impl.
#include "autograd/autocast_weight_cache.h"

#include "autograd/autocast.h"
#include "core/error.h"
#include "core/ops/cast_multi.h"

namespace unirep {

namespace {

thread_local AutocastWeightCache* g_innermost = nullptr;

constexpr int64_t kAlign = 8;  // elements: 16 bytes of a 16-bit dtype

bool cacheable(const Tensor& p) {
  return p.defined() && p.dtype() == DType::Float32 && p.is_contiguous() && p.numel() > 0;
}

}  // namespace

AutocastWeightCache::AutocastWeightCache(const std::vector<Tensor>& params) : outer_(g_innermost) {
  if (autocast_enabled()) {
    dtype_ = autocast_dtype();
    std::vector<Tensor> sources;
    std::vector<int64_t> offsets;
    int64_t total = 0;
    for (const Tensor& p : params) {
      if (!cacheable(p)) continue;
      StorageEntries& s = by_storage_[p.storage().get()];
      bool cached = false;
      for (const Entry& e : s.entries) cached = cached || (e.param_offset == p.offset() && e.numel == p.numel());
      if (cached) continue;
      UNIREP_CHECK(sources.empty() || p.device() == sources.front().device(), "AutocastWeightCache: parameters on ",
                   sources.empty() ? "" : sources.front().device().str(), " and ", p.device().str(),
                   ", expected one device");
      s.storage = p.storage();
      s.entries.push_back({p.offset(), p.numel(), total});
      sources.push_back(p.detach());
      offsets.push_back(total);
      total += (p.numel() + kAlign - 1) / kAlign * kAlign;
    }
    count_ = sources.size();
    if (!sources.empty()) {
      buffer_ = Tensor::empty({total}, dtype_, sources.front().device());
      std::vector<Tensor> destinations;
      destinations.reserve(sources.size());
      for (size_t i = 0; i < sources.size(); ++i)
        destinations.push_back(make_view(buffer_, {sources[i].numel()}, {1}, offsets[i]));
      cast_multi(sources, destinations);
    }
  }
  g_innermost = this;
}

AutocastWeightCache::~AutocastWeightCache() { g_innermost = outer_; }

Tensor autocast_cached_cast(const Tensor& x, DType dtype) {
  if (g_innermost == nullptr || !x.defined() || x.dtype() != DType::Float32 || !x.is_contiguous()) return Tensor();
  const int64_t begin = x.offset(), end = begin + x.numel();
  for (const AutocastWeightCache* c = g_innermost; c != nullptr; c = c->outer_) {
    if (c->dtype_ != dtype) continue;
    auto it = c->by_storage_.find(x.storage().get());
    if (it == c->by_storage_.end()) continue;
    for (const AutocastWeightCache::Entry& e : it->second.entries)
      if (e.param_offset <= begin && end <= e.param_offset + e.numel)
        return make_view(c->buffer_, x.shape(), contiguous_strides(x.shape()), e.buffer_offset + begin - e.param_offset);
  }
  return Tensor();
}

}  // namespace unirep
