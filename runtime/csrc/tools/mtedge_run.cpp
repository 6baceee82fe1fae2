// mtedge_run: load a bundle with the C++ runtime (no Python), run its golden inputs and
// print per-task max abs error against the golden outputs and median latency.
//
//   mtedge_run BUNDLE.mtb [--task T]... [--variant V] [--backend B] [--threads N]
//              [--iters N] [--tol X]
// Exit status: 0 ok, 1 some task exceeds --tol or has no usable golden output, 2 usage or
// load error (every golden file is checked against its sha256 and the shape the manifest implies).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mtedge/errors.h"
#include "mtedge/npy.h"
#include "mtedge/runtime.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: mtedge_run BUNDLE [--task T]... [--variant V] [--backend B] "
               "[--threads N] [--iters N] [--tol X]\n");
  return 2;
}

// Strict number parsing: "--iters 1x" or "--tol abc" is a usage error, not 0.
bool parse_num(const std::string& s, double lo, double hi, double& out) {
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0' && out >= lo && out <= hi;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string bundle = argv[1];
  std::vector<std::string> tasks;
  mtedge::RuntimeOptions opts;
  std::string variant;
  int iters = 50;
  double tol = 1e-3;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    double num = 0;
    if (a == "--task") tasks.push_back(v);
    else if (a == "--variant") variant = v;
    else if (a == "--backend") opts.backend = v;
    else if (a == "--threads" && parse_num(v, 0, 1024, num)) opts.backend_options.threads = int(num);
    else if (a == "--iters" && parse_num(v, 1, 1e7, num)) iters = int(num);
    else if (a == "--tol" && parse_num(v, 0, 1e30, num)) tol = num;
    else return usage();
  }
  if (!variant.empty()) opts.variants = {variant};
  try {
    mtedge::Runtime rt(bundle, opts);
    const auto& m = rt.manifest();
    if (tasks.empty()) tasks = rt.tasks();
    const std::size_t per_sample = static_cast<std::size_t>(rt.input_spec().numel());
    const int batch = static_cast<int>(rt.input_spec().shape[0]);
    const mtedge::NpyArray golden_in = mtedge::read_bundle_npy(
        m, m.golden_input, mtedge::golden_shape(m.golden_samples, rt.input_spec().shape));
    const std::size_t samples = static_cast<std::size_t>(m.golden_samples / batch);
    std::printf("bundle %s: backend %s, variant %s, load %.1f ms, %zu golden samples\n",
                m.name.c_str(), rt.stats().backend.c_str(), rt.default_variant().c_str(),
                rt.stats().load_ms, samples);

    bool ok = true;
    for (const auto& task : tasks) {
      const std::size_t out_n = static_cast<std::size_t>(rt.output_spec(task).numel());
      std::vector<float> in(per_sample), out(out_n);
      double max_err = -1;  // -1: no golden output for this task
      auto it = m.golden_outputs.find(task);
      mtedge::NpyArray golden;
      if (it != m.golden_outputs.end())
        golden = mtedge::read_bundle_npy(m, it->second,
                                         mtedge::golden_shape(m.golden_samples, rt.output_spec(task).shape));
      for (std::size_t s = 0; s < samples; ++s) {
        std::copy_n(golden_in.data.begin() + s * per_sample, per_sample, in.begin());
        rt.run(in.data(), {task}, {out.data()});
        if (!golden.data.empty()) {
          max_err = std::max(max_err, 0.0);
          for (std::size_t k = 0; k < out_n; ++k) {
            const double e = std::fabs(double(out[k]) - double(golden.data[s * out_n + k]));
            max_err = std::isnan(e) ? INFINITY : std::max(max_err, e);  // NaN never passes
          }
        }
      }
      std::vector<double> ms;
      for (int i = 0; i < iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        rt.run(in.data(), {task}, {out.data()});
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
      const bool task_ok = max_err <= tol;
      ok &= task_ok;  // a task without a golden output fails: nothing was checked
      if (max_err < 0)
        std::printf("  %-14s no golden output FAIL    median %.3f ms\n", task.c_str(), ms[ms.size() / 2]);
      else
        std::printf("  %-14s max abs err %.3g %-4s  median %.3f ms\n", task.c_str(), max_err,
                    task_ok ? "ok" : "FAIL", ms[ms.size() / 2]);
    }
    return ok ? 0 : 1;
  } catch (const mtedge::Error& e) {
    std::fprintf(stderr, "mtedge_run: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // csrc throws only mtedge::Error; this is a bug
    std::fprintf(stderr, "mtedge_run: internal error (please report): %s\n", e.what());
    return 3;
  }
}
