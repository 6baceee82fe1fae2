#include "mtedge/runtime.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "mtedge/errors.h"

namespace mtedge {
namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t ns_since(Clock::time_point t0) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
}

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

}  // namespace

// What one variant compiled at load: shared by every context, read-only while runs happen.
struct Runtime::LoadedVariant {
  std::string name;
  std::vector<std::unique_ptr<Segment>> segments;          // by manifest segment index
  std::vector<bool> reads_input;                           // segment consumes the model input
  std::vector<TensorSpec> tensors;                         // every boundary tensor
  TensorSpec input;
  std::vector<TensorSpec> task_outputs;                    // by manifest task index
  std::vector<SegmentStats> stats;                         // by manifest segment index (mu_)
};

// One caller's execution state: a lane (TensorRT: CUDA stream + activation scratch), and per
// loaded variant one request per segment and its own boundary tensors. Only the run holding it
// touches it; it returns to the pool when the run ends.
struct Runtime::Context {
  struct PerVariant {
    std::map<std::string, std::unique_ptr<Buffer>> tensors;  // by name
    std::vector<std::unique_ptr<Request>> requests;          // by manifest segment index
    std::vector<const Buffer*> task_outputs;                 // by manifest task index
    Buffer* input = nullptr;
  };
  std::size_t index = 0;
  std::unique_ptr<Lane> lane;       // declared first: destroyed after the requests using it
  std::vector<PerVariant> variants;  // parallel to Runtime::variants_
  std::vector<bool> mask;            // this run's segments
  std::vector<std::uint64_t> seg_ns;  // this run's time per segment, merged into stats at release
  std::vector<float> staging;        // host conversion target when the input buffer is not host
  ContextStats stats;                // guarded by Runtime::mu_
};

// Holds a context for one run; gives it back (and merges the run's timings) however run() ends.
class Runtime::Lease {
 public:
  explicit Lease(Runtime& rt) : rt_(rt) {
    std::unique_lock<std::mutex> lock(rt_.mu_);
    rt_.cv_.wait(lock, [&] { return rt_.closed_.load() || !rt_.free_.empty(); });
    if (rt_.closed_.load())
      throw InputError("the runtime for bundle " + rt_.manifest_.dir +
                       " was closed (by another thread?); create a new Runtime to run it again");
    ctx_ = rt_.free_.back();
    rt_.free_.pop_back();
    rt_.active_ += 1;
  }
  ~Lease() {
    {
      std::lock_guard<std::mutex> lock(rt_.mu_);
      if (finished_) {
        RuntimeStats& s = rt_.stats_;
        LoadedVariant& v = *rt_.variants_[variant_];
        for (std::size_t i = 0; i < ctx_->mask.size(); ++i)
          if (ctx_->mask[i]) {
            v.stats[i].runs += 1;
            v.stats[i].total_ns += ctx_->seg_ns[i];
          }
        s.last_run_ns = run_ns_;
        s.total_run_ns += run_ns_;
        s.runs += 1;
        s.last_input_address = input_;
        s.last_input_copy = copy_reason_;
        ctx_->stats.runs += 1;
        ctx_->stats.total_run_ns += run_ns_;
      }
      rt_.free_.push_back(ctx_);
      rt_.active_ -= 1;
    }
    rt_.cv_.notify_all();  // a waiting caller, or close() waiting for the last run
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Context& context() { return *ctx_; }
  void finish(std::size_t variant, std::uint64_t run_ns, std::uintptr_t input, std::string why) {
    finished_ = true;
    variant_ = variant;
    run_ns_ = run_ns;
    input_ = input;
    copy_reason_ = std::move(why);
  }

 private:
  Runtime& rt_;
  Context* ctx_ = nullptr;
  bool finished_ = false;
  std::size_t variant_ = 0;
  std::uint64_t run_ns_ = 0;
  std::uintptr_t input_ = 0;
  std::string copy_reason_;
};

Runtime::Runtime(const std::string& bundle_dir, RuntimeOptions opts)
    : manifest_(load_manifest(bundle_dir)), opts_(std::move(opts)) {
  try {
    load();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {  // only mtedge::Error leaves csrc
    throw BackendError("out of memory while loading bundle " + manifest_.dir +
                       "; load fewer variants or free memory");
  } catch (const std::exception& e) {
    throw BackendError("loading bundle " + manifest_.dir + " failed: " + e.what());
  }
}

void Runtime::load() {
  const auto t0 = Clock::now();
  if (opts_.callers < 1 || opts_.callers > 64)
    throw InputError("callers=" + std::to_string(opts_.callers) +
                     " must be between 1 and 64 (one execution context per concurrent caller)");
  opts_.backend_options.callers = opts_.callers;
  backend_ = make_backend(opts_.backend, opts_.backend_options);
  stats_.backend = backend_->name();
  stats_.zero_copy_input = backend_->reads_in_place(MemoryKind::kHost);
  if (opts_.variants.empty()) opts_.variants.push_back(manifest_.default_variant);
  for (const auto& v : opts_.variants) {
    manifest_.variant(v);  // throws UnknownNameError naming the variants
    if (std::none_of(variants_.begin(), variants_.end(),
                     [&](const auto& lv) { return lv->name == v; }))
      load_variant(v, opts_.engine_target);
  }
  backend_->finalize();

  const std::size_t nseg = manifest_.segments.size();
  for (const auto& t : manifest_.tasks) {
    std::vector<bool> mask(nseg, false);
    for (int id : t.segment_ids) mask[id] = true;
    task_masks_.push_back(std::move(mask));
  }
  const auto t_ctx = Clock::now();
  for (int i = 0; i < opts_.callers; ++i) contexts_.push_back(make_context());
  for (auto it = contexts_.rbegin(); it != contexts_.rend(); ++it) free_.push_back(it->get());
  stats_.compile_ms += ms(ns_since(t_ctx));  // requests are part of getting ready to run
  stats_.contexts = opts_.callers;
  stats_.parallel_lanes = backend_->parallel_lanes();
  stats_.load_ms = ms(ns_since(t0));
}

Runtime::~Runtime() { close(); }

void Runtime::load_variant(const std::string& name, const std::string& engine_target) {
  const Variant& var = manifest_.variant(name);
  // Which files to compile: the variant's ONNX, or a built engine set for this backend.
  const EngineSet* engines = nullptr;
  if (!engine_target.empty()) {
    auto it = manifest_.engines.find(engine_target);
    if (it == manifest_.engines.end()) {
      std::string have;
      for (const auto& kv : manifest_.engines) have += (have.empty() ? "" : ", ") + kv.first;
      throw UnknownNameError("unknown engine target '" + engine_target +
                             "'; this bundle has engines for: " + (have.empty() ? "none" : have) +
                             " (build one with `mtedge build --target " + engine_target + "`)");
    }
    if (it->second.backend != backend_->name())
      throw InputError("engine target '" + engine_target + "' holds " + it->second.backend +
                       " engines but the runtime uses the " + backend_->name() +
                       " backend; pass backend='" + it->second.backend + "'");
    if (it->second.variant == name) engines = &it->second;
  }
  if (!engines && backend_->name() == "tensorrt") {
    for (const auto& kv : manifest_.engines)
      if (kv.second.backend == "tensorrt" && kv.second.variant == name) {
        engines = &kv.second;
        break;
      }
    if (!engines)
      throw BundleError("variant '" + name + "' has no TensorRT engines in bundle " +
                        manifest_.dir + "; build them on the device with `mtedge build "
                        "--target <jetson profile>` or use backend='openvino'");
  }

  auto lv = std::make_unique<LoadedVariant>();
  lv->name = name;
  const auto t_verify = Clock::now();
  std::vector<FileRef> files;
  std::vector<std::string> bytes;  // what was hashed is what gets compiled
  for (const auto& seg : manifest_.segments) {
    if (engines) {
      auto it = engines->segments.find(seg.name);
      if (it == engines->segments.end())
        throw BundleError("engines." + engines->target + " has no engine for segment '" +
                          seg.name + "'; rebuild the engines for this bundle");
      files.push_back(it->second);
    } else {
      files.push_back(var.segments.at(seg.name).ref);
    }
  }
  if (opts_.verify)
    for (const auto& f : files) bytes.push_back(read_verified(manifest_, f));
  stats_.verify_ms += ms(ns_since(t_verify));

  // Boundary tensors (the model input and every segment output): allocated per context.
  lv->input = manifest_.input;
  lv->tensors.push_back(manifest_.input);
  for (const auto& seg : manifest_.segments)
    for (const auto& out : var.segments.at(seg.name).outputs) lv->tensors.push_back(out);

  const auto t_compile = Clock::now();
  for (std::size_t i = 0; i < manifest_.segments.size(); ++i) {
    const auto& seg = manifest_.segments[i];
    const VariantSegment& vs = var.segments.at(seg.name);
    SegmentSource src{seg.name, bundle_path(manifest_, files[i].file),
                      opts_.verify ? std::move(bytes[i]) : std::string(), vs.inputs, vs.outputs};
    lv->segments.push_back(backend_->load(src));
    stats_.compiled_segments += 1;
    bool reads_input = false;
    for (const auto& t : vs.inputs) reads_input |= t.name == manifest_.input.name;
    lv->reads_input.push_back(reads_input);
    lv->stats.push_back(SegmentStats{name, seg.name, 0, 0});
  }
  stats_.compile_ms += ms(ns_since(t_compile));
  for (const auto& t : manifest_.tasks)
    for (const auto& spec : lv->tensors)
      if (spec.name == t.output) lv->task_outputs.push_back(spec);
  variants_.push_back(std::move(lv));
}

std::unique_ptr<Runtime::Context> Runtime::make_context() {
  auto c = std::make_unique<Context>();
  c->index = contexts_.size();
  c->lane = backend_->create_lane();
  std::size_t max_input = 0;
  for (const auto& lv : variants_) {
    Context::PerVariant pv;
    for (const auto& spec : lv->tensors) {
      pv.tensors.emplace(spec.name, backend_->allocate(spec));
      stats_.intermediate_bytes += spec.bytes();
    }
    const Variant& var = manifest_.variant(lv->name);
    for (std::size_t i = 0; i < manifest_.segments.size(); ++i) {
      const VariantSegment& vs = var.segments.at(manifest_.segments[i].name);
      auto req = lv->segments[i]->create_request(*c->lane);
      // Producer outputs and consumer inputs bind the same buffer: heads read the trunk in place.
      for (const auto& t : vs.inputs) req->bind(t.name, *pv.tensors.at(t.name));
      for (const auto& t : vs.outputs) req->bind(t.name, *pv.tensors.at(t.name));
      pv.requests.push_back(std::move(req));
    }
    for (const auto& spec : lv->task_outputs) pv.task_outputs.push_back(pv.tensors.at(spec.name).get());
    pv.input = pv.tensors.at(manifest_.input.name).get();
    max_input = std::max(max_input, static_cast<std::size_t>(lv->input.numel()));
    c->variants.push_back(std::move(pv));
  }
  if (!c->variants.front().input->host()) c->staging.resize(max_input);
  c->mask.assign(manifest_.segments.size(), false);
  c->seg_ns.assign(manifest_.segments.size(), 0);
  return c;
}

std::size_t Runtime::variant_index(const std::string& name) const {
  if (closed_.load())
    throw InputError("the runtime for bundle " + manifest_.dir +
                     " is closed; create a new Runtime to run it again");
  if (name.empty()) return 0;
  for (std::size_t i = 0; i < variants_.size(); ++i)
    if (variants_[i]->name == name) return i;
  manifest_.variant(name);  // throws if the bundle lacks it entirely
  std::string loaded;
  for (const auto& v : variants_) loaded += (loaded.empty() ? "" : ", ") + v->name;
  throw UnknownNameError("variant '" + name + "' was not loaded (loaded: " + loaded +
                         "); pass it in variants= when creating the runtime");
}

const Runtime::LoadedVariant& Runtime::find_variant(const std::string& name) const {
  return *variants_[variant_index(name)];
}

const std::string& Runtime::default_variant() const { return find_variant({}).name; }

std::vector<std::string> Runtime::tasks() const {
  std::vector<std::string> out;
  for (const auto& t : manifest_.tasks) out.push_back(t.name);
  return out;
}

std::vector<std::string> Runtime::variants() const {
  std::vector<std::string> out;
  for (const auto& v : variants_) out.push_back(v->name);
  return out;
}

const TensorSpec& Runtime::input_spec(const std::string& variant) const {
  return find_variant(variant).input;
}

const TensorSpec& Runtime::output_spec(const std::string& task, const std::string& variant) const {
  const int idx = manifest_.task_index(task);
  if (idx < 0)
    throw UnknownNameError("unknown task '" + task + "'; this bundle has tasks: " +
                           manifest_.task_names());
  return find_variant(variant).task_outputs[idx];
}

std::vector<std::string> Runtime::plan(const std::vector<std::string>& tasks) const {
  std::vector<bool> mask(manifest_.segments.size(), false);
  for (const auto& t : tasks) {
    const int idx = manifest_.task_index(t);
    if (idx < 0)
      throw UnknownNameError("unknown task '" + t + "'; this bundle has tasks: " +
                             manifest_.task_names());
    for (std::size_t i = 0; i < mask.size(); ++i) mask[i] = mask[i] || task_masks_[idx][i];
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) out.push_back(manifest_.segments[i].name);
  return out;
}

namespace {

std::size_t scalar_size(ScalarType t) {
  switch (t) {
    case ScalarType::kFloat32: return 4;
    case ScalarType::kFloat64: return 8;
    case ScalarType::kFloat16:
    case ScalarType::kBFloat16: return 2;
    default: return 0;
  }
}

std::string ints_str(const std::vector<std::int64_t>& v) {
  std::string s = "(";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

// Byte strides of a dense C-order tensor.
std::vector<std::int64_t> c_strides(const Shape& shape, std::size_t itemsize) {
  std::vector<std::int64_t> st(shape.size());
  std::int64_t step = static_cast<std::int64_t>(itemsize);
  for (std::size_t i = shape.size(); i-- > 0;) {
    st[i] = step;
    step *= shape[i];
  }
  return st;
}

// Dense C order? Dimensions of size 1 may carry any stride (torch's unsqueeze/permute give them
// arbitrary ones) without moving any element.
bool is_c_contiguous(const InputView& in, std::size_t itemsize) {
  if (in.strides.empty()) return true;
  const auto want = c_strides(in.shape, itemsize);
  for (std::size_t i = 0; i < want.size(); ++i)
    if (in.shape[i] != 1 && in.strides[i] != want[i]) return false;
  return true;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FFu;
  std::uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal half: a normal float
    std::uint32_t e = 113, m = mant;
    while (!(m & 0x400u)) {
      m <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((m & 0x3FFu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float load_as_float(const unsigned char* p, ScalarType t) {
  switch (t) {
    case ScalarType::kFloat32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case ScalarType::kFloat64: {
      double d;
      std::memcpy(&d, p, 8);
      return static_cast<float>(d);
    }
    case ScalarType::kFloat16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      return half_to_float(h);
    }
    default: {  // bfloat16: the top half of a float32
      std::uint16_t b;
      std::memcpy(&b, p, 2);
      const std::uint32_t bits = std::uint32_t(b) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
  }
}

// Gathers any strided host tensor of a float type into dense float32 `dst` (C order).
void convert_to_dense_f32(const InputView& in, float* dst) {
  const std::size_t item = scalar_size(in.type);
  const auto strides = in.strides.empty() ? c_strides(in.shape, item) : in.strides;
  const std::size_t rank = in.shape.size();
  const std::int64_t inner = in.shape[rank - 1], inner_stride = strides[rank - 1];
  std::vector<std::int64_t> idx(rank, 0);  // outer index (the last dimension is the inner loop)
  const auto* base = static_cast<const unsigned char*>(in.data);
  for (;;) {
    std::int64_t off = 0;
    for (std::size_t d = 0; d + 1 < rank; ++d) off += idx[d] * strides[d];
    const unsigned char* p = base + off;
    if (in.type == ScalarType::kFloat32 && inner_stride == 4) {
      std::memcpy(dst, p, static_cast<std::size_t>(inner) * 4);
    } else {
      for (std::int64_t k = 0; k < inner; ++k) dst[k] = load_as_float(p + k * inner_stride, in.type);
    }
    dst += inner;
    std::size_t d = rank - 1;
    while (d-- > 0) {
      if (++idx[d] < in.shape[d]) break;
      idx[d] = 0;
    }
    if (d == static_cast<std::size_t>(-1)) return;
  }
}

std::string hex_address(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

}  // namespace

// "" when the runtime can hand the caller's memory to the backend as it is; otherwise why it
// must be copied. Throws InputError for what no copy can fix (shape, non-float dtype, device
// memory the backend cannot read or cannot convert).
std::string Runtime::input_copy_reason(const InputView& in, const TensorSpec& spec) const {
  const std::string fix = " (fix: np.ascontiguousarray(x, dtype=np.float32).reshape(" +
                          shape_str(spec.shape) + "))";
  if (in.data == nullptr) throw InputError("input '" + spec.name + "' is null");
  if (in.shape != spec.shape)
    throw InputError("input '" + spec.name + "' must be a float32 array of shape " +
                     shape_str(spec.shape) + "; got " + in.type_name + " array of shape " +
                     shape_str(in.shape) + fix);
  if (in.type == ScalarType::kOther)
    throw InputError("input '" + spec.name + "' has dtype " + in.type_name +
                     "; expected float32 (float64/float16/bfloat16 are converted): normalize it as "
                     "the model was trained and convert to float32 first" + fix);
  if (!in.strides.empty() && in.strides.size() != in.shape.size())
    throw InputError("input '" + spec.name + "' has " + std::to_string(in.strides.size()) +
                     " strides for " + std::to_string(in.shape.size()) + " dimensions");
  const std::size_t item = scalar_size(in.type);
  const bool contiguous = is_c_contiguous(in, item);
  if (in.memory == MemoryKind::kDevice) {
    if (!backend_->reads_in_place(MemoryKind::kDevice))
      throw InputError("input '" + spec.name + "' is in CUDA device memory but the " + backend_->name() +
                       " backend reads host memory; pass a CPU tensor (x.cpu() / cupy.asnumpy(x))");
    if (!backend_->is_device_pointer(in.data))
      throw InputError("input '" + spec.name + "' claims to be device memory (__cuda_array_interface__) "
                       "but " + hex_address(in.data) + " is not a CUDA device allocation; pass a host "
                       "array instead, or the device tensor itself");
    // Converting device memory would need a kernel; the runtime only moves bytes there.
    if (in.type != ScalarType::kFloat32 || !contiguous)
      throw InputError("input '" + spec.name + "' is a " + in.type_name + (contiguous ? "" : " non-contiguous") +
                       " device tensor; the runtime reads device memory only as C-contiguous float32 "
                       "(fix: x.contiguous().float() on the device, or pass a host array)");
  }
  if (in.type != ScalarType::kFloat32) return in.type_name + " -> float32";
  if (!contiguous)
    return "non-contiguous strides " + ints_str(in.strides) + " bytes; C-contiguous float32 " +
           shape_str(spec.shape) + " has " + ints_str(c_strides(spec.shape, 4));
  if (!backend_->reads_in_place(in.memory))
    return "host -> device (the " + backend_->name() + " backend reads device memory)";
  const std::size_t align = backend_->input_alignment();  // only matters for memory read in place
  if (reinterpret_cast<std::uintptr_t>(in.data) % align != 0)
    return "address " + hex_address(in.data) + " is not " + std::to_string(align) + "-byte aligned (" +
           backend_->name() + " needs it)";
  return "";
}

void Runtime::feed_input(Context& c, std::size_t vi, const InputView& in, const std::string& why) {
  const LoadedVariant& v = *variants_[vi];
  Context::PerVariant& pv = c.variants[vi];
  if (in.memory == MemoryKind::kDevice) c.lane->wait_for_producer(in.stream);
  if (why.empty()) {  // the caller's memory as it is
    for (std::size_t i = 0; i < v.segments.size(); ++i)
      if (v.reads_input[i]) pv.requests[i]->set_external_input(manifest_.input.name, in.data);
    return;
  }
  Buffer& buf = *pv.input;
  const bool dense_f32 = in.type == ScalarType::kFloat32 && is_c_contiguous(in, 4);
  if (dense_f32) {
    c.lane->copy_from(in.data, in.memory, buf);  // host->device, unaligned host or device->device
  } else if (void* host = buf.host()) {
    convert_to_dense_f32(in, static_cast<float*>(host));
  } else {
    convert_to_dense_f32(in, c.staging.data());
    c.lane->copy_from(c.staging.data(), MemoryKind::kHost, buf);
  }
  for (std::size_t i = 0; i < v.segments.size(); ++i)
    if (v.reads_input[i]) pv.requests[i]->reset_input(manifest_.input.name);
}

void Runtime::run(const InputView& input, const std::vector<std::string>& tasks,
                  const std::vector<void*>& outputs, const RunOptions& opts) {
  if (tasks.empty())
    throw InputError("no tasks requested; pass at least one of: " + manifest_.task_names());
  if (outputs.size() != tasks.size())
    throw InputError("got " + std::to_string(outputs.size()) + " output buffers for " +
                     std::to_string(tasks.size()) + " tasks; pass one per task");
  if (input.data == nullptr) throw InputError("input '" + manifest_.input.name + "' is null");

  Lease lease(*this);  // waits for a free context; throws when closed
  Context& c = lease.context();
  const std::size_t vi = variant_index(opts.variant);
  const LoadedVariant& v = *variants_[vi];
  const std::string why = input_copy_reason(input, v.input);
  if (!why.empty() && !opts.allow_copy)
    throw InputError("input '" + v.input.name + "' would be copied (" + why +
                     ") but copy=False; pass a C-contiguous float32 array of shape " +
                     shape_str(v.input.shape) + " in memory the " + backend_->name() +
                     " backend reads, or allow the copy");
  // Plan: union of the tasks' segment masks, walked in manifest (topological) order.
  std::fill(c.mask.begin(), c.mask.end(), false);
  for (const auto& t : tasks) {
    const int idx = manifest_.task_index(t);
    if (idx < 0)
      throw UnknownNameError("unknown task '" + t + "'; this bundle has tasks: " +
                             manifest_.task_names());
    const auto& m = task_masks_[idx];
    for (std::size_t i = 0; i < m.size(); ++i)
      if (m[i]) c.mask[i] = true;
  }
  const auto t0 = Clock::now();
  Context::PerVariant& pv = c.variants[vi];
  feed_input(c, vi, input, why);
  for (std::size_t i = 0; i < c.mask.size(); ++i) {
    c.seg_ns[i] = 0;
    if (!c.mask[i]) continue;
    const auto ts = Clock::now();
    pv.requests[i]->run();
    c.seg_ns[i] = ns_since(ts);
  }
  for (std::size_t k = 0; k < tasks.size(); ++k)
    c.lane->copy_to_host(*pv.task_outputs[manifest_.task_index(tasks[k])], outputs[k]);
  lease.finish(vi, ns_since(t0), reinterpret_cast<std::uintptr_t>(input.data), why);
}

void Runtime::run(const void* input, const std::vector<std::string>& tasks,
                  const std::vector<void*>& outputs, const std::string& variant) {
  InputView in;
  in.data = input;
  in.shape = input_spec(variant).shape;  // the caller promises a dense float32 input
  RunOptions o;
  o.variant = variant;
  run(in, tasks, outputs, o);
}

std::map<std::string, std::vector<float>> Runtime::run(const std::vector<float>& input,
                                                       const std::vector<std::string>& tasks,
                                                       const std::string& variant) {
  const TensorSpec& in = input_spec(variant);
  if (input.size() != static_cast<std::size_t>(in.numel()))
    throw InputError("input '" + in.name + "' has " + std::to_string(input.size()) +
                     " floats; expected " + std::to_string(in.numel()) + " (shape " +
                     shape_str(in.shape) + ")");
  std::map<std::string, std::vector<float>> out;
  std::vector<void*> ptrs;
  for (const auto& t : tasks) {
    auto& vec = out[t];
    vec.resize(static_cast<std::size_t>(output_spec(t, variant).numel()));
  }
  for (const auto& t : tasks) ptrs.push_back(out[t].data());
  run(input.data(), tasks, ptrs, variant);
  return out;
}

RuntimeStats Runtime::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  RuntimeStats s = stats_;
  for (const auto& v : variants_) s.segments.insert(s.segments.end(), v->stats.begin(), v->stats.end());
  for (const auto& c : contexts_) s.per_context.push_back(c->stats);
  return s;
}

void Runtime::close() {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  cv_.notify_all();  // callers waiting for a context give up
  cv_.wait(lock, [&] { return active_ == 0; });
  free_.clear();
  contexts_.clear();  // requests, buffers and lanes before the segments and backend that made them
  // The compiled segments go; names and specs stay, so a thread reading input_spec() or
  // output_spec() while another closes gets "closed" instead of freed memory.
  for (auto& v : variants_) v->segments.clear();
  backend_.reset();
}

bool Runtime::closed() const { return closed_.load(); }

void Runtime::reset_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.runs = stats_.total_run_ns = stats_.last_run_ns = 0;
  for (auto& v : variants_)
    for (auto& s : v->stats) s.runs = s.total_ns = 0;
  for (auto& c : contexts_) c->stats = ContextStats{};
}

}  // namespace mtedge
