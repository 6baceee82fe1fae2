// OpenVINO backend: one ov::CompiledModel + one ov::InferRequest per segment, created at load.
// Boundary tensors are ov::Tensor objects allocated at load and set on both the producer's
// output port and every consumer's input port, so heads read the trunk's output in place.
#include "openvino_backend.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <openvino/openvino.hpp>

#include "mtedge/errors.h"

namespace mtedge {
namespace {

ov::element::Type ov_type(DType t) {
  return t == DType::kFloat32 ? ov::element::f32 : ov::element::f16;
}

ov::Shape ov_shape(const Shape& s) { return ov::Shape(s.begin(), s.end()); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class OvBuffer final : public Buffer {
 public:
  explicit OvBuffer(const TensorSpec& spec)
      : Buffer(spec), tensor_(ov_type(spec.dtype), ov_shape(spec.shape)) {}
  void* host() override { return tensor_.data(); }
  const ov::Tensor& tensor() const { return tensor_; }

 private:
  ov::Tensor tensor_;  // owns host memory for the runtime's lifetime
};

// Host memory needs no ordering beyond the calling thread: copies are plain memcpy.
class OvLane final : public Lane {
 public:
  void copy_to_host(const Buffer& src, void* dst) override {
    std::memcpy(dst, static_cast<const OvBuffer&>(src).tensor().data(), src.spec().bytes());
  }
  void copy_from(const void* src, MemoryKind, Buffer& dst) override {
    std::memcpy(dst.host(), src, dst.spec().bytes());
  }
};

// One caller's InferRequest of a compiled segment: its own intermediate memory, the weights
// stay in the CompiledModel.
class OvRequest final : public Request {
 public:
  OvRequest(ov::CompiledModel& model, const SegmentSource& src)
      : request_(model.create_infer_request()), name_(src.name) {
    for (const auto& t : src.inputs)
      inputs_.emplace(t.name, Input{model.input(t.name), ov_type(t.dtype), ov_shape(t.shape), ov::Tensor(), nullptr});
  }

  void bind(const std::string& tensor, Buffer& buf) override {
    try {
      const ov::Tensor& t = static_cast<OvBuffer&>(buf).tensor();
      request_.set_tensor(tensor, t);
      auto it = inputs_.find(tensor);
      if (it != inputs_.end()) it->second.own = t;
    } catch (const ov::Exception& e) {
      throw BackendError("segment '" + name_ + "': cannot bind tensor '" + tensor +
                         "' of shape " + shape_str(buf.spec().shape) + ": " + e.what());
    }
  }

  void set_external_input(const std::string& tensor, const void* data) override {
    Input& in = inputs_.at(tensor);
    if (in.bound == data) return;  // the same caller buffer as last call: already wrapped
    // Wraps caller memory without copying; OpenVINO only reads inputs.
    request_.set_tensor(in.port, ov::Tensor(in.type, in.shape, const_cast<void*>(data)));
    in.bound = data;
  }

  void reset_input(const std::string& tensor) override {
    Input& in = inputs_.at(tensor);
    if (in.bound == nullptr) return;  // already reading the buffer bound at load
    request_.set_tensor(in.port, in.own);
    in.bound = nullptr;
  }

  void run() override {
    try {
      request_.infer();
    } catch (const ov::Exception& e) {
      throw BackendError("segment '" + name_ + "' failed in OpenVINO: " + e.what());
    }
  }

 private:
  ov::InferRequest request_;
  std::string name_;
  // Port, type and shape of each input resolved at load, so a call only compares a pointer.
  struct Input {
    ov::Output<const ov::Node> port;
    ov::element::Type type;
    ov::Shape shape;
    ov::Tensor own;               // the buffer bound at load
    const void* bound = nullptr;  // caller memory wrapped instead; nullptr: `own`
  };
  std::map<std::string, Input> inputs_;
};

class OvSegment final : public Segment {
 public:
  OvSegment(ov::CompiledModel model, SegmentSource src) : model_(std::move(model)), src_(std::move(src)) {
    src_.data.clear();  // the bytes were compiled; keep only names and specs
  }
  std::unique_ptr<Request> create_request(Lane&) override {
    try {
      return std::make_unique<OvRequest>(model_, src_);
    } catch (const ov::Exception& e) {
      throw BackendError("OpenVINO cannot create an infer request for segment '" + src_.name + "': " + e.what());
    }
  }
  int streams() const { return static_cast<int>(model_.get_property(ov::num_streams).num); }

 private:
  ov::CompiledModel model_;  // shared by every request: the weights are here once
  SegmentSource src_;
};

class OpenVinoBackend final : public Backend {
 public:
  explicit OpenVinoBackend(const BackendOptions& opts) : device_(opts.device) {
    if (opts.precision == "f32")
      config_.emplace(ov::hint::inference_precision(ov::element::f32));
    else if (opts.precision == "bf16")
      config_.emplace(ov::hint::inference_precision(ov::element::bf16));
    else if (opts.precision == "f16")
      config_.emplace(ov::hint::inference_precision(ov::element::f16));
    else
      throw InputError("precision '" + opts.precision +
                       "' is not supported by the OpenVINO backend; use 'f32' (parity) or 'bf16'");
    if (opts.threads < 0)
      throw InputError("threads=" + std::to_string(opts.threads) + " must be >= 0 (0: default)");
    if (opts.threads > 0) config_.emplace(ov::inference_num_threads(opts.threads));
    config_.emplace(ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY));
    // Infer requests of one CompiledModel only compute at the same time on different CPU
    // streams; LATENCY alone gives one stream, so concurrent callers would queue on it. The
    // streams split the threads (INFERENCE_NUM_THREADS is the total); the weights stay shared.
    if (opts.callers > 1) config_.emplace(ov::num_streams(opts.callers));
    if (!opts.cache_dir.empty()) core_.set_property(ov::cache_dir(opts.cache_dir));
  }

  std::string name() const override { return "openvino"; }
  bool reads_in_place(MemoryKind kind) const override { return kind == MemoryKind::kHost; }
  std::unique_ptr<Lane> create_lane() override { return std::make_unique<OvLane>(); }
  int parallel_lanes() const override { return streams_; }

  std::unique_ptr<Buffer> allocate(const TensorSpec& spec) override {
    return std::make_unique<OvBuffer>(spec);
  }

  std::unique_ptr<Segment> load(const SegmentSource& src) override {
    try {
      ov::CompiledModel compiled;
      if (ends_with(src.path, ".onnx") || ends_with(src.path, ".xml")) {
        // From the verified bytes when the runtime read them (the file is not read twice).
        std::shared_ptr<ov::Model> model = src.data.empty() || !ends_with(src.path, ".onnx")
                                               ? core_.read_model(src.path)
                                               : core_.read_model(src.data, ov::Tensor());
        check_names(*model, src);
        // Dynamic-batch exports: fix every input to the manifest's static shape.
        std::map<std::string, ov::PartialShape> shapes;
        for (const auto& t : src.inputs)
          if (model->input(t.name).get_partial_shape().is_dynamic())
            shapes.emplace(t.name, ov::PartialShape(ov_shape(t.shape)));
        if (!shapes.empty()) model->reshape(shapes);
        compiled = core_.compile_model(model, device_, config_);
      } else {  // an OpenVINO compiled blob from engines.<target>
        if (!src.data.empty()) {
          std::istringstream blob(src.data);
          compiled = core_.import_model(blob, device_, config_);
        } else {
          std::ifstream blob(src.path, std::ios::binary);
          compiled = core_.import_model(blob, device_, config_);
        }
      }
      auto seg = std::make_unique<OvSegment>(std::move(compiled), src);
      streams_ = streams_ ? std::min(streams_, seg->streams()) : seg->streams();
      return seg;
    } catch (const ov::Exception& e) {
      throw BackendError("OpenVINO cannot compile segment '" + src.name + "' from '" + src.path +
                         "' on " + device_ + ": " + e.what());
    }
  }

 private:
  // The ONNX input/output names are the manifest's tensor names (bundle-format.md).
  static void check_names(const ov::Model& model, const SegmentSource& src) {
    auto check = [&](const auto& ports, const std::vector<TensorSpec>& want, const char* what) {
      std::set<std::string> have;
      for (const auto& p : ports)
        for (const auto& n : p.get_names()) have.insert(n);
      for (const auto& t : want)
        if (!have.count(t.name)) {
          std::string list;
          for (const auto& p : ports) list += (list.empty() ? "" : ", ") + p.get_any_name();
          throw BundleError("segment file '" + src.path + "' has no " + what + " named '" +
                            t.name + "' (it has: " + list +
                            "); the file does not match the manifest: re-export the bundle");
        }
    };
    check(model.inputs(), src.inputs, "input");
    check(model.outputs(), src.outputs, "output");
  }

  ov::Core core_;
  std::string device_;
  ov::AnyMap config_;
  int streams_ = 0;  // the fewest CPU streams any segment was compiled with
};

}  // namespace

std::unique_ptr<Backend> make_openvino_backend(const BackendOptions& opts) {
  return std::make_unique<OpenVinoBackend>(opts);
}

}  // namespace mtedge
