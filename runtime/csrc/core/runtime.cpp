#include "mtedge/runtime.h"

#include <algorithm>

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

// Everything one variant needs at run time, built at load and never resized afterwards.
struct Runtime::LoadedVariant {
  std::string name;
  std::vector<std::unique_ptr<Segment>> segments;          // by manifest segment index
  std::vector<bool> reads_input;                           // segment consumes the model input
  std::map<std::string, std::unique_ptr<Buffer>> tensors;  // every boundary tensor, by name
  std::vector<const Buffer*> task_outputs;                 // by manifest task index
  std::vector<SegmentStats> stats;                         // by manifest segment index
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
  backend_ = make_backend(opts_.backend, opts_.backend_options);
  stats_.backend = backend_->name();
  stats_.zero_copy_input = backend_->zero_copy_input();
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
  scratch_mask_.assign(nseg, false);
  stats_.load_ms = ms(ns_since(t0));
}

Runtime::~Runtime() = default;

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

  // One buffer per boundary tensor: the model input and every segment output.
  auto add = [&](const TensorSpec& spec) {
    auto buf = backend_->allocate(spec);
    stats_.intermediate_bytes += spec.bytes();
    lv->tensors.emplace(spec.name, std::move(buf));
  };
  add(manifest_.input);
  for (const auto& seg : manifest_.segments)
    for (const auto& out : var.segments.at(seg.name).outputs) add(out);

  const auto t_compile = Clock::now();
  for (std::size_t i = 0; i < manifest_.segments.size(); ++i) {
    const auto& seg = manifest_.segments[i];
    const VariantSegment& vs = var.segments.at(seg.name);
    SegmentSource src{seg.name, bundle_path(manifest_, files[i].file),
                      opts_.verify ? std::move(bytes[i]) : std::string(), vs.inputs, vs.outputs};
    auto compiled = backend_->load(src);
    // Producer outputs and consumer inputs bind the same buffer: heads read the trunk in place.
    bool reads_input = false;
    for (const auto& t : vs.inputs) {
      compiled->bind(t.name, *lv->tensors.at(t.name));
      reads_input |= t.name == manifest_.input.name;
    }
    for (const auto& t : vs.outputs) compiled->bind(t.name, *lv->tensors.at(t.name));
    lv->segments.push_back(std::move(compiled));
    lv->reads_input.push_back(reads_input);
    lv->stats.push_back(SegmentStats{name, seg.name, 0, 0});
  }
  stats_.compile_ms += ms(ns_since(t_compile));
  for (const auto& t : manifest_.tasks) lv->task_outputs.push_back(lv->tensors.at(t.output).get());
  variants_.push_back(std::move(lv));
}

const Runtime::LoadedVariant& Runtime::find_variant(const std::string& name) const {
  if (variants_.empty())
    throw InputError("the runtime for bundle " + manifest_.dir +
                     " is closed; create a new Runtime to run it again");
  if (name.empty()) return *variants_.front();
  for (const auto& v : variants_)
    if (v->name == name) return *v;
  manifest_.variant(name);  // throws if the bundle lacks it entirely
  std::string loaded;
  for (const auto& v : variants_) loaded += (loaded.empty() ? "" : ", ") + v->name;
  throw UnknownNameError("variant '" + name + "' was not loaded (loaded: " + loaded +
                         "); pass it in variants= when creating the runtime");
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
  return find_variant(variant).tensors.at(manifest_.input.name)->spec();
}

const TensorSpec& Runtime::output_spec(const std::string& task, const std::string& variant) const {
  const int idx = manifest_.task_index(task);
  if (idx < 0)
    throw UnknownNameError("unknown task '" + task + "'; this bundle has tasks: " +
                           manifest_.task_names());
  return find_variant(variant).task_outputs[idx]->spec();
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

void Runtime::run(const void* input, const std::vector<std::string>& tasks,
                  const std::vector<void*>& outputs, const std::string& variant) {
  if (tasks.empty())
    throw InputError("no tasks requested; pass at least one of: " + manifest_.task_names());
  if (outputs.size() != tasks.size())
    throw InputError("got " + std::to_string(outputs.size()) + " output buffers for " +
                     std::to_string(tasks.size()) + " tasks; pass one per task");
  if (input == nullptr) throw InputError("input '" + manifest_.input.name + "' is null");

  std::lock_guard<std::mutex> lock(mu_);
  if (closed_)
    throw InputError("the runtime for bundle " + manifest_.dir +
                     " was closed (by another thread?); create a new Runtime to run it again");
  LoadedVariant& v = const_cast<LoadedVariant&>(find_variant(variant));
  // Plan: union of the tasks' segment masks, walked in manifest (topological) order.
  std::fill(scratch_mask_.begin(), scratch_mask_.end(), false);
  for (const auto& t : tasks) {
    const int idx = manifest_.task_index(t);
    if (idx < 0)
      throw UnknownNameError("unknown task '" + t + "'; this bundle has tasks: " +
                             manifest_.task_names());
    const auto& m = task_masks_[idx];
    for (std::size_t i = 0; i < m.size(); ++i)
      if (m[i]) scratch_mask_[i] = true;
  }
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < scratch_mask_.size(); ++i) {
    if (!scratch_mask_[i]) continue;
    Segment& seg = *v.segments[i];
    if (v.reads_input[i]) seg.set_external_input(manifest_.input.name, input);
    const auto ts = Clock::now();
    seg.run();
    v.stats[i].runs += 1;
    v.stats[i].total_ns += ns_since(ts);
  }
  for (std::size_t k = 0; k < tasks.size(); ++k)
    v.task_outputs[manifest_.task_index(tasks[k])]->copy_to_host(outputs[k]);
  stats_.last_run_ns = ns_since(t0);
  stats_.total_run_ns += stats_.last_run_ns;
  stats_.runs += 1;
  stats_.last_input_address = reinterpret_cast<std::uintptr_t>(input);
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
  return s;
}

void Runtime::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  variants_.clear();  // segments and buffers before the backend that made them
  backend_.reset();
}

bool Runtime::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void Runtime::reset_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.runs = stats_.total_run_ns = stats_.last_run_ns = 0;
  for (auto& v : variants_)
    for (auto& s : v->stats) s.runs = s.total_ns = 0;
}

}  // namespace mtedge
