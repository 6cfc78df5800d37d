#include "distributed/reducer.h"

#include <algorithm>
#include <map>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "layers/module.h"

namespace unirep {

namespace {
constexpr int64_t kSlotAlignBytes = 64;
}

struct GradientReducer::State {
  struct Bucket {
    DType dtype = DType::Float32;
    Tensor buffer;
    std::vector<int64_t> members;  // indices into params, in the order they were packed
    int64_t bytes = 0;             // packed so far, slots aligned
    int64_t missing = 0;           // gradients not yet ready in this backward
    std::unique_ptr<PendingCollective> pending;
  };

  explicit State(Communicator& c) : comm(c) {}

  Communicator& comm;
  std::vector<Tensor> params;
  std::vector<int64_t> registration_index;  // params[i] was the registration_index[i]-th given
  std::vector<Tensor> views;                // params[i]'s gradient slot in its bucket
  std::vector<int64_t> bucket_of;
  std::vector<Bucket> buckets;
  std::vector<char> ready;
  bool armed = false, sync = false;
  size_t next_to_issue = 0;
  int64_t issued = 0;

  void issue(size_t b) {
    buckets[b].pending = comm.all_reduce_async(buckets[b].buffer, ReduceOp::Avg);
    ++issued;
  }

  void on_ready(int64_t i) {
    if (!armed || !sync) return;
    UNIREP_CHECK(!ready[i], "GradientReducer: parameter ", registration_index[i],
                 " became ready twice in one backward (used by two checkpointed segments or two backward calls "
                 "between prepare_for_backward and finish)");
    ready[i] = 1;
    const Tensor grad = params[i].grad();
    if (!grad.same(views[i])) {  // someone replaced the grad during backward
      views[i].copy_(grad);
      params[i].set_grad(views[i]);
    }
    --buckets[bucket_of[i]].missing;
    for (size_t b = 0; b < next_to_issue; ++b)
      if (buckets[b].pending) buckets[b].pending->progress();
    while (next_to_issue < buckets.size() && buckets[next_to_issue].missing == 0) issue(next_to_issue++);
  }
};

GradientReducer::GradientReducer(Communicator& comm, const std::vector<Tensor>& params, int64_t bucket_bytes,
                                 int64_t first_bucket_bytes)
    : state_(std::make_shared<State>(comm)) {
  UNIREP_CHECK(bucket_bytes > 0 && first_bucket_bytes > 0, "GradientReducer: bucket sizes must be positive, got ",
               bucket_bytes, " and ", first_bucket_bytes, " bytes");
  State& s = *state_;
  const Device device = comm.device();
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k];
    UNIREP_CHECK(p.defined(), "GradientReducer: parameter ", k, " is undefined");
    if (!p.requires_grad()) continue;
    UNIREP_CHECK(p.is_leaf(), "GradientReducer: parameter ", k, " (", p.str(), ") is not a leaf");
    UNIREP_CHECK(p.device() == device, "GradientReducer: parameter ", k, " is on ", p.device().str(), " but the ",
                 comm.backend(), " communicator reduces on ", device.str());
    for (const Tensor& q : s.params)
      UNIREP_CHECK(!q.same(p), "GradientReducer: parameter ", k, " is given twice");
    s.params.push_back(p);
    s.registration_index.push_back(int64_t(k));
  }
  const int64_t n = int64_t(s.params.size());
  s.bucket_of.assign(size_t(n), -1);
  s.ready.assign(size_t(n), 0);
  std::vector<int64_t> offset(size_t(n), 0);

  // One open bucket per dtype; a dtype's first bucket closes at first_bucket_bytes.
  std::map<DType, int64_t> open;
  std::map<DType, int64_t> closed_count;
  for (int64_t i = n - 1; i >= 0; --i) {
    const Tensor& p = s.params[size_t(i)];
    auto it = open.find(p.dtype());
    if (it == open.end()) {
      s.buckets.emplace_back();
      s.buckets.back().dtype = p.dtype();
      it = open.emplace(p.dtype(), int64_t(s.buckets.size()) - 1).first;
    }
    State::Bucket& bucket = s.buckets[size_t(it->second)];
    const int64_t element = int64_t(p.element_size());
    const int64_t align = std::max<int64_t>(1, kSlotAlignBytes / element);
    const int64_t start = (bucket.bytes / element + align - 1) / align * align;
    offset[size_t(i)] = start;
    bucket.bytes = (start + p.numel()) * element;
    bucket.members.push_back(i);
    s.bucket_of[size_t(i)] = it->second;
    const int64_t cap = closed_count[p.dtype()] == 0 ? first_bucket_bytes : bucket_bytes;
    if (bucket.bytes >= cap) {
      ++closed_count[p.dtype()];
      open.erase(it);
    }
  }
  for (State::Bucket& bucket : s.buckets)
    bucket.buffer = Tensor::zeros({bucket.bytes / int64_t(dtype_size(bucket.dtype))}, bucket.dtype, device);
  for (int64_t i = 0; i < n; ++i) {
    const Tensor& p = s.params[size_t(i)];
    s.views.push_back(make_view(s.buckets[size_t(s.bucket_of[size_t(i)])].buffer, p.shape(),
                                contiguous_strides(p.shape()), offset[size_t(i)]));
  }

  std::weak_ptr<State> weak = state_;
  for (int64_t i = 0; i < n; ++i)
    s.params[size_t(i)].register_grad_ready_hook([weak, i](const Tensor&) {
      if (auto state = weak.lock()) state->on_ready(i);
    });
}

GradientReducer::~GradientReducer() {
  // A collective still running writes into the buffers: let it end before they go.
  for (State::Bucket& bucket : state_->buckets)
    if (bucket.pending) bucket.pending->wait();
}

void GradientReducer::prepare_for_backward(bool sync) {
  State& s = *state_;
  UNIREP_CHECK(!(s.armed && s.sync), "GradientReducer: prepare_for_backward after a synchronising backward "
                                     "without finish() (its all-reduces were never waited for)");
  for (State::Bucket& bucket : s.buckets) {
    bool all_undefined = true;
    for (int64_t i : bucket.members) all_undefined = all_undefined && !s.params[size_t(i)].grad().defined();
    if (all_undefined) bucket.buffer.zero_();
    for (int64_t i : bucket.members) {
      const Tensor& p = s.params[size_t(i)];
      const Tensor grad = p.grad();
      if (grad.same(s.views[size_t(i)])) continue;
      if (!grad.defined()) {
        if (!all_undefined) s.views[size_t(i)].zero_();
      } else {
        s.views[size_t(i)].copy_(grad);
      }
      p.set_grad(s.views[size_t(i)]);
    }
    bucket.missing = int64_t(bucket.members.size());
  }
  std::fill(s.ready.begin(), s.ready.end(), 0);
  s.next_to_issue = 0;
  s.armed = true;
  s.sync = sync;
}

void GradientReducer::finish() {
  State& s = *state_;
  UNIREP_CHECK(s.armed, "GradientReducer: finish() without prepare_for_backward()");
  s.armed = false;
  if (!s.sync) return;
  while (s.next_to_issue < s.buckets.size()) s.issue(s.next_to_issue++);
  for (State::Bucket& bucket : s.buckets) {
    bucket.pending->wait();
    bucket.pending.reset();
  }
}

std::vector<std::vector<int64_t>> GradientReducer::bucket_layout() const {
  std::vector<std::vector<int64_t>> layout;
  for (const State::Bucket& bucket : state_->buckets) {
    layout.emplace_back();
    for (int64_t i : bucket.members) layout.back().push_back(state_->registration_index[size_t(i)]);
  }
  return layout;
}

int64_t GradientReducer::collectives_issued() const { return state_->issued; }

void broadcast_module_state(Communicator& comm, Module& module, int root) {
  if (comm.size() == 1) return;
  NoGradGuard no_grad;
  for (auto& [name, tensor] : module.state_dict()) {
    UNIREP_CHECK(tensor.device() == comm.device(), "broadcast_module_state: '", name, "' is on ",
                 tensor.device().str(), " but the ", comm.backend(), " communicator works on ", comm.device().str());
    if (tensor.is_contiguous()) {
      comm.broadcast(tensor, root);
    } else {
      Tensor packed = tensor.contiguous();
      comm.broadcast(packed, root);
      tensor.copy_(packed);
    }
  }
}

namespace {
template <class T> std::vector<T> all_reduce_host(Communicator& comm, const std::vector<T>& values) {
  if (values.empty()) return {};
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}).to(comm.device());
  comm.all_reduce(t, ReduceOp::Sum);
  return t.to_vector<T>();
}

template <class T> std::vector<T> gather_by_sum(Communicator& comm, T value) {
  std::vector<T> slots(size_t(comm.size()), T(0));
  slots[size_t(comm.rank())] = value;
  return comm.size() > 1 ? all_reduce_host(comm, slots) : slots;
}
}  // namespace

std::vector<int64_t> all_reduce_sum(Communicator& comm, const std::vector<int64_t>& values) {
  return all_reduce_host(comm, values);
}

std::vector<double> all_reduce_sum(Communicator& comm, const std::vector<double>& values) {
  return all_reduce_host(comm, values);
}

std::vector<int64_t> all_gather(Communicator& comm, int64_t value) { return gather_by_sum(comm, value); }
std::vector<double> all_gather(Communicator& comm, double value) { return gather_by_sum(comm, value); }

}  // namespace unirep
