// mtedge_run: load a bundle with the C++ runtime (no Python), run its golden inputs and
// print per-task max abs error against the golden outputs and median latency.
//
//   mtedge_run BUNDLE.mtb [--task T]... [--variant V] [--backend B] [--threads N]
//              [--iters N] [--tol X]
// Exit status: 0 ok, 1 some task exceeds --tol, 2 usage or load error.
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
    if (a == "--task") tasks.push_back(v);
    else if (a == "--variant") variant = v;
    else if (a == "--backend") opts.backend = v;
    else if (a == "--threads") opts.backend_options.threads = std::atoi(v.c_str());
    else if (a == "--iters") iters = std::max(1, std::atoi(v.c_str()));
    else if (a == "--tol") tol = std::atof(v.c_str());
    else return usage();
  }
  if (!variant.empty()) opts.variants = {variant};
  try {
    mtedge::Runtime rt(bundle, opts);
    const auto& m = rt.manifest();
    if (tasks.empty()) tasks = rt.tasks();
    const mtedge::NpyArray golden_in = mtedge::read_npy(mtedge::bundle_path(m, m.golden_input.file));
    const std::size_t per_sample = static_cast<std::size_t>(rt.input_spec().numel());
    const std::size_t samples = golden_in.data.size() / per_sample;
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
      if (it != m.golden_outputs.end()) golden = mtedge::read_npy(mtedge::bundle_path(m, it->second.file));
      for (std::size_t s = 0; s < samples; ++s) {
        std::copy_n(golden_in.data.begin() + s * per_sample, per_sample, in.begin());
        rt.run(in.data(), {task}, {out.data()});
        if (golden.data.size() >= (s + 1) * out_n)
          for (std::size_t k = 0; k < out_n; ++k)
            max_err = std::max(max_err, double(std::fabs(out[k] - golden.data[s * out_n + k])));
      }
      std::vector<double> ms;
      for (int i = 0; i < iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        rt.run(in.data(), {task}, {out.data()});
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
      const bool task_ok = max_err <= tol;
      ok &= task_ok || max_err < 0;
      if (max_err < 0)
        std::printf("  %-14s no golden output         median %.3f ms\n", task.c_str(), ms[ms.size() / 2]);
      else
        std::printf("  %-14s max abs err %.3g %-4s  median %.3f ms\n", task.c_str(), max_err,
                    task_ok ? "ok" : "FAIL", ms[ms.size() / 2]);
    }
    return ok ? 0 : 1;
  } catch (const mtedge::Error& e) {
    std::fprintf(stderr, "mtedge_run: %s\n", e.what());
    return 2;
  }
}
