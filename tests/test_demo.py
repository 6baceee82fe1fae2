"""`make demo` runs `mtedge demo`; this runs the same command quickly (tiny training, small subsets)."""

from cli_helpers import mtedge


def test_demo_runs_end_to_end(tmp_path):
    proc = mtedge("demo", "--out", tmp_path, "--epochs", "0.05", "--limit", "400", "--bench-iters", "10",
                  "--keep-flops", "0.8", "--val-count", "64", "--finetune-epochs", "0.05", "--slim-epochs", "0.02")
    out = proc.stdout
    for step in ("1. train", "2. inspect", "3. export", "4. run every task", "5. bench", "6. compress", "7. quantize",
                 "8. build", "9. slimmable"):
        assert step in out, f"demo step {step!r} missing"
    assert "PASS" in out and "reload-per-switch" in out
    for artifact in ("fashion-mt.pt", "fashion-mt.mtb/manifest.json", "fashion-mt-pruned.pt", "fashion-mt-pruned.mtb/manifest.json",
                     "build-orin-nano-8gb.sh", "prune-report/report.json", "fashion-mt-slim.mtb/manifest.json"):
        assert (tmp_path / artifact).exists(), artifact
    assert "config c50: garment ->" in out and "int8 runtime: int8 variant" in out
