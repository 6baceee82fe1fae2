// The TensorRT backend's own paths through the test double (load errors, several runtimes at
// once, no device), and proof that the double catches the faults it claims to: each check the
// backend relies on is triggered here directly through the real TensorRT/CUDA API.
#include <gtest/gtest.h>

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "mtedge/errors.h"
#include "mtedge/npy.h"
#include "mtedge/runtime.h"
#include "../cpp/test_env.h"

namespace fs = std::filesystem;

namespace {

mtedge::RuntimeOptions trt_opts(bool verify = true) {
  mtedge::RuntimeOptions o;
  o.backend = "tensorrt";
  o.verify = verify;
  return o;
}

std::string engine_file(const std::string& bundle, const std::string& segment, const std::string& variant = "fp32") {
  const mtedge::Manifest m = mtedge::load_manifest(bundle);
  for (const auto& kv : m.engines)
    if (kv.second.backend == "tensorrt" && kv.second.variant == variant)
      return (fs::path(bundle) / kv.second.segments.at(segment).file).string();
  throw std::runtime_error("no engines");
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

class TensorRtDouble : public ::testing::Test {
 protected:
  void SetUp() override {
    bundle_ = test_env("MTEDGE_TRT_BUNDLE");
    if (bundle_.empty() || !fs::exists(fs::path(bundle_) / "manifest.json"))
      GTEST_SKIP() << "MTEDGE_TRT_BUNDLE not set: run through ctest (its fixture builds the engines)";
  }
  void TearDown() override { cudaDeviceReset(); }  // a deliberate fault must not leak into the next test
  fs::path copy_bundle(const std::string& tag) {
    const fs::path dst = fs::temp_directory_path() / ("mtedge_trtd_" + tag + "_" + std::to_string(::getpid()) + ".mtb");
    fs::remove_all(dst);
    fs::copy(bundle_, dst, fs::copy_options::recursive);
    return dst;
  }
  std::string bundle_;
};

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity s, const char* msg) noexcept override {
    if (s <= Severity::kERROR) last = msg;
  }
  std::string last;
};

// ---------------------------------------------------------------- the backend through the double

TEST_F(TensorRtDouble, BackendIsTensorRtAndMatchesOpenVinoOnRandomInput) {
  mtedge::Runtime trt(bundle_, trt_opts());
  mtedge::RuntimeOptions ov;
  ov.backend = "openvino";
  mtedge::Runtime ref(bundle_, ov);
  EXPECT_EQ(trt.stats().backend, "tensorrt");
  EXPECT_FALSE(trt.stats().zero_copy_input);
  EXPECT_TRUE(mtedge::tensorrt_compiled());
  std::vector<float> x(static_cast<std::size_t>(trt.input_spec().numel()));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 2.f;
  const auto a = trt.run(x, trt.tasks()), b = ref.run(x, ref.tasks());
  for (const auto& t : trt.tasks())
    for (std::size_t i = 0; i < a.at(t).size(); ++i) ASSERT_NEAR(a.at(t)[i], b.at(t)[i], 1e-4f) << t << "[" << i << "]";
}

TEST_F(TensorRtDouble, SeveralRuntimesAtOnceInThreads) {
  auto opts = trt_opts();
  opts.variants = {"fp32", "c50"};
  mtedge::Runtime r1(bundle_, opts), r2(bundle_, trt_opts());
  const auto& m = r1.manifest();
  const auto in = mtedge::read_npy(mtedge::bundle_path(m, m.golden_input.file));
  const auto golden = mtedge::read_npy(mtedge::bundle_path(m, m.golden_outputs.at("seg").file));
  const std::size_t n_in = static_cast<std::size_t>(r1.input_spec().numel());
  const std::vector<float> x(in.data.begin(), in.data.begin() + n_in);
  const auto c50_ref = r1.run(x, {"seg"}, "c50").at("seg");
  std::vector<std::string> errors(4);
  auto worker = [&](int k) {
    mtedge::Runtime& rt = k % 2 ? r2 : r1;
    for (int j = 0; j < 10; ++j) {
      const std::string variant = (k == 0 && j % 2) ? "c50" : "fp32";
      const auto out = rt.run(x, {"seg", "depth"}, k % 2 ? "" : variant).at("seg");
      const float* want = variant == "c50" ? c50_ref.data() : golden.data.data();
      for (std::size_t i = 0; i < out.size(); ++i)
        if (std::fabs(out[i] - want[i]) > 1e-4f) {
          errors[k] = "thread " + std::to_string(k) + " run " + std::to_string(j) + " " + variant + " differs at " +
                      std::to_string(i);
          return;
        }
    }
  };
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) threads.emplace_back(worker, k);
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(r1.stats().runs + r2.stats().runs, 41u);
}

TEST_F(TensorRtDouble, CorruptEngineIsRefusedWithTensorRtsReason) {
  const fs::path b = copy_bundle("corrupt");
  const std::string plan = engine_file(b.string(), "seg");
  {
    std::fstream f(plan, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.write("X", 1);
  }
  const std::string msg = what_of([&] { mtedge::Runtime rt(b.string(), trt_opts(/*verify=*/false)); });
  EXPECT_NE(msg.find("cannot deserialize '" + plan + "' (segment 'seg')"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Magic tag does not match"), std::string::npos) << msg;
  EXPECT_THROW(mtedge::Runtime(b.string(), trt_opts()), mtedge::IntegrityError);  // verify catches it first
  fs::resize_file(plan, 100);
  EXPECT_NE(what_of([&] { mtedge::Runtime rt(b.string(), trt_opts(false)); }).find("Serialization"), std::string::npos);
  fs::remove_all(b);
}

TEST_F(TensorRtDouble, EngineOfAnotherTensorRtVersionIsRefused) {
  const std::string other = test_env("MTEDGE_OTHER_TRT_BUNDLE");
  if (other.empty() || other == bundle_) GTEST_SKIP() << "only one TensorRT header set: no other version's engines";
  const std::string msg = what_of([&] { mtedge::Runtime rt(other, trt_opts()); });
  EXPECT_NE(msg.find("Version tag does not match"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rebuild it on this device"), std::string::npos) << msg;
  EXPECT_THROW(mtedge::Runtime(other, trt_opts()), mtedge::BackendError);
}

TEST_F(TensorRtDouble, MissingEngineFileIsNamed) {
  const fs::path b = copy_bundle("missing");
  const std::string plan = engine_file(b.string(), "neck");
  fs::remove(plan);
  try {
    mtedge::Runtime rt(b.string(), trt_opts());
    FAIL() << "missing engine accepted";
  } catch (const mtedge::FileMissingError& e) {
    EXPECT_NE(std::string(e.what()).find("neck.plan"), std::string::npos) << e.what();
  }
  try {
    mtedge::Runtime rt(b.string(), trt_opts(/*verify=*/false));
    FAIL() << "missing engine accepted without verification";
  } catch (const mtedge::FileMissingError& e) {
    EXPECT_NE(std::string(e.what()).find("segment 'neck' cannot be read"), std::string::npos) << e.what();
  }
  fs::remove_all(b);
}

TEST_F(TensorRtDouble, NoDeviceMeansAClearError) {
  ::setenv("MTEDGE_FAKE_CUDA_DEVICES", "0", 1);
  const std::string msg = what_of([&] { mtedge::Runtime rt(bundle_, trt_opts()); });
  ::unsetenv("MTEDGE_FAKE_CUDA_DEVICES");
  EXPECT_NE(msg.find("no CUDA device is visible; use backend='openvino'"), std::string::npos) << msg;
  EXPECT_FALSE(msg.empty());
}

TEST_F(TensorRtDouble, DeviceInputIsBoundWithoutACopyByConcurrentContexts) {
  auto opts = trt_opts();
  opts.callers = 2;
  mtedge::Runtime rt(bundle_, opts);
  const auto& m = rt.manifest();
  const auto in = mtedge::read_npy(mtedge::bundle_path(m, m.golden_input.file));
  const auto golden = mtedge::read_npy(mtedge::bundle_path(m, m.golden_outputs.at("seg").file));
  const std::size_t n_in = static_cast<std::size_t>(rt.input_spec().numel());
  const std::size_t n_out = static_cast<std::size_t>(rt.output_spec("seg").numel());
  cudaStream_t up = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&up, 0), cudaSuccess);
  // Sample s at an aligned address, and once more 4 bytes into a block (TensorRT cannot bind it).
  std::vector<void*> blocks;
  auto upload = [&](int s, std::size_t offset) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, n_in * 4 + offset), cudaSuccess);
    blocks.push_back(p);
    char* dst = static_cast<char*>(p) + offset;
    EXPECT_EQ(cudaMemcpyAsync(dst, in.data.data() + s * n_in, n_in * 4, cudaMemcpyHostToDevice, up), cudaSuccess);
    return static_cast<const void*>(dst);
  };
  const void* dev[2] = {upload(0, 0), upload(1, 0)};
  const void* odd = upload(1, 4);
  ASSERT_EQ(cudaStreamSynchronize(up), cudaSuccess);
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      std::vector<float> out(n_out);
      for (int j = 0; j < 8; ++j) {
        const int s = (k + j) % 2;
        mtedge::InputView v;
        v.data = dev[s];
        v.shape = rt.input_spec().shape;
        v.memory = mtedge::MemoryKind::kDevice;
        mtedge::RunOptions no_copy;
        no_copy.allow_copy = false;  // device float32 at 256-byte alignment: nothing to copy
        rt.run(v, {"seg"}, {out.data()}, no_copy);
        for (std::size_t i = 0; i < n_out; ++i)
          if (std::fabs(out[i] - golden.data[s * n_out + i]) > 1e-4f) {
            errors[k] = "thread " + std::to_string(k) + " sample " + std::to_string(s) + " differs at " + std::to_string(i);
            return;
          }
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  auto st = rt.stats();
  EXPECT_EQ(st.runs, 32u);
  EXPECT_EQ(st.last_input_copy, "");
  EXPECT_TRUE(st.last_input_address == reinterpret_cast<std::uintptr_t>(dev[0]) ||
              st.last_input_address == reinterpret_cast<std::uintptr_t>(dev[1]));

  mtedge::InputView v;
  v.data = odd;
  v.shape = rt.input_spec().shape;
  v.memory = mtedge::MemoryKind::kDevice;
  std::vector<float> out(n_out);
  rt.run(v, {"seg"}, {out.data()});  // one device->device copy into the context's input buffer
  EXPECT_NE(rt.stats().last_input_copy.find("is not 256-byte aligned"), std::string::npos) << rt.stats().last_input_copy;
  for (std::size_t i = 0; i < n_out; ++i) ASSERT_NEAR(out[i], golden.data[n_out + i], 1e-4f) << i;
  // Host memory passed off as device memory: cudaPointerGetAttributes says otherwise.
  v.data = in.data.data();
  const std::string msg = what_of([&] { rt.run(v, {"seg"}, {out.data()}); });
  EXPECT_NE(msg.find("is not a CUDA device allocation"), std::string::npos) << msg;
  for (void* p : blocks) cudaFree(p);
  cudaStreamDestroy(up);
}

// ---------------------------------------------------------------- the double catches what it claims

struct Direct : TensorRtDouble {
  void SetUp() override {
    TensorRtDouble::SetUp();
    if (IsSkipped()) return;
    std::ifstream f(engine_file(bundle_, "depth"), std::ios::binary);
    const std::vector<char> plan((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    runtime.reset(nvinfer1::createInferRuntime(logger));
    engine.reset(runtime->deserializeCudaEngine(plan.data(), plan.size()));
    ASSERT_TRUE(engine) << logger.last;
    ctx.reset(engine->createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED));
    ASSERT_EQ(engine->getNbIOTensors(), 2);
    in = engine->getIOTensorName(0);
    out = engine->getIOTensorName(1);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, 0), cudaSuccess);
  }
  void TearDown() override {
    ctx.reset();
    engine.reset();
    runtime.reset();
    for (void* p : blocks) cudaFree(p);
    if (stream) cudaStreamDestroy(stream);
    TensorRtDouble::TearDown();
  }
  std::size_t bytes(const char* name) {
    const nvinfer1::Dims d = engine->getTensorShape(name);
    std::size_t n = 4;
    for (int i = 0; i < d.nbDims; ++i) n *= static_cast<std::size_t>(d.d[i]);
    return n;
  }
  char* alloc(std::size_t n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, n), cudaSuccess);
    blocks.push_back(p);
    return static_cast<char*>(p);
  }
  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  std::unique_ptr<nvinfer1::IExecutionContext> ctx;
  const char *in = nullptr, *out = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<void*> blocks;
};

TEST_F(Direct, WrongTensorNameIsRejectedLikeTensorRt) {
  EXPECT_FALSE(ctx->setTensorAddress("neck.out_typo", alloc(256)));
  EXPECT_NE(logger.last.find("Given invalid tensor name: neck.out_typo"), std::string::npos) << logger.last;
  EXPECT_EQ(engine->getTensorIOMode("neck.out_typo"), nvinfer1::TensorIOMode::kNONE);
}

TEST_F(Direct, UnsetAddressAndMissingActivationMemoryFailEnqueue) {
  ctx->setTensorAddress(in, alloc(bytes(in)));
  EXPECT_FALSE(ctx->enqueueV3(stream));
  EXPECT_NE(logger.last.find(std::string("Address is not set for output tensor ") + out), std::string::npos) << logger.last;
  ctx->setTensorAddress(out, alloc(bytes(out)));
  EXPECT_FALSE(ctx->enqueueV3(stream));
  EXPECT_NE(logger.last.find("setDeviceMemory was never called"), std::string::npos) << logger.last;
}

TEST_F(Direct, ShapeMismatchAndBadActivationMemoryAreRejected) {
  nvinfer1::Dims d = engine->getTensorShape(in);
  d.d[d.nbDims - 1] += 1;
  EXPECT_FALSE(ctx->setInputShape(in, d));
  EXPECT_NE(logger.last.find("Static dimension mismatch"), std::string::npos) << logger.last;
  const int64_t need = engine->getDeviceMemorySizeV2();
  ASSERT_GT(need, 0);
  char* mem = alloc(static_cast<std::size_t>(need) + 256);
  ctx->setDeviceMemoryV2(mem, need - 1);
  EXPECT_NE(logger.last.find("size >= mEngine.getDeviceMemorySizeV2()"), std::string::npos) << logger.last;
  ctx->setDeviceMemoryV2(mem + 1, need);
  EXPECT_NE(logger.last.find("not 256-byte aligned"), std::string::npos) << logger.last;
}

TEST_F(Direct, OverlappingTensorsAndOutOfBoundsAccessFaultTheDevice) {
  const int64_t need = engine->getDeviceMemorySizeV2();
  char* block = alloc(bytes(in) + static_cast<std::size_t>(need) + 512);
  ctx->setTensorAddress(in, block);
  ctx->setTensorAddress(out, alloc(bytes(out)));
  ctx->setDeviceMemoryV2(block, need);  // the activations on top of the live input
  EXPECT_TRUE(ctx->enqueueV3(stream));  // as on a device: the fault shows at the next sync
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorIllegalAddress);
  EXPECT_NE(std::string(cudaGetErrorString(cudaErrorIllegalAddress)).find("input '" + std::string(in) + "'"),
            std::string::npos);
  EXPECT_NE(std::string(cudaGetErrorString(cudaErrorIllegalAddress)).find("overlap"), std::string::npos);
  cudaDeviceReset();
  char* small = alloc(bytes(out) - 4);  // one float short
  ctx->setTensorAddress(out, small);
  ctx->setDeviceMemoryV2(alloc(static_cast<std::size_t>(need)), need);
  ctx->enqueueV3(stream);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorIllegalAddress);
  EXPECT_NE(std::string(cudaGetErrorString(cudaErrorIllegalAddress)).find("runs 4 byte(s) past the end"),
            std::string::npos) << cudaGetErrorString(cudaErrorIllegalAddress);
}

TEST_F(Direct, ContextsOnTwoStreamsMustNotShareActivationMemory) {
  const int64_t need = engine->getDeviceMemorySizeV2();
  ASSERT_GT(need, 0);
  std::unique_ptr<nvinfer1::IExecutionContext> ctx2(
      engine->createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED));
  cudaStream_t stream2 = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream2, 0), cudaSuccess);
  for (auto* c : {ctx.get(), ctx2.get()}) {
    c->setTensorAddress(in, alloc(bytes(in)));
    c->setTensorAddress(out, alloc(bytes(out)));
  }
  // Own activation blocks: both contexts in flight at once is fine.
  ctx->setDeviceMemoryV2(alloc(static_cast<std::size_t>(need)), need);
  ctx2->setDeviceMemoryV2(alloc(static_cast<std::size_t>(need)), need);
  EXPECT_TRUE(ctx->enqueueV3(stream));
  EXPECT_TRUE(ctx2->enqueueV3(stream2));
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream2), cudaSuccess);
  // One block shared while both are in flight on different streams: a race the double reports.
  char* shared = alloc(static_cast<std::size_t>(need));
  ctx->setDeviceMemoryV2(shared, need);
  ctx2->setDeviceMemoryV2(shared, need);
  EXPECT_TRUE(ctx->enqueueV3(stream));
  EXPECT_TRUE(ctx2->enqueueV3(stream2));
  EXPECT_EQ(cudaStreamSynchronize(stream2), cudaErrorIllegalAddress);
  const std::string why = cudaGetErrorString(cudaErrorIllegalAddress);
  EXPECT_NE(why.find("activation memory overlaps the activation memory"), std::string::npos) << why;
  EXPECT_NE(why.find("another stream"), std::string::npos) << why;
  cudaStreamSynchronize(stream);
  ctx2.reset();
  cudaStreamDestroy(stream2);
}

TEST_F(Direct, HostSeesResultsOnlyAfterSynchronizeAndGuardsCatchStrayWrites) {
  const std::size_t n = bytes(in);
  char* dev = alloc(n);
  std::vector<float> host(n / 4, 1.5f), back(n / 4, 0.f);
  ASSERT_EQ(cudaMemcpyAsync(dev, host.data(), n, cudaMemcpyHostToDevice, stream), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(back.data(), dev, n, cudaMemcpyDeviceToHost, stream), cudaSuccess);
  EXPECT_TRUE(std::isnan(back[0]));  // read before the sync: poison, not data
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(back[0], 1.5f);
  EXPECT_EQ(cudaMemcpyAsync(dev, host.data(), n + 1, cudaMemcpyHostToDevice, stream), cudaErrorInvalidValue);
  dev[n] = 0;  // a stray host-side write one byte past the end: the guard zone sees it
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorIllegalAddress);
  EXPECT_NE(std::string(cudaGetErrorString(cudaErrorIllegalAddress)).find("overwritten at offset +" + std::to_string(n)),
            std::string::npos) << cudaGetErrorString(cudaErrorIllegalAddress);
  dev[n] = static_cast<char>(0xFD);  // restore the canary so cleanup frees cleanly
}

}  // namespace
