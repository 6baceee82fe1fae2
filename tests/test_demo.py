"""`make demo` runs `mtedge demo`; this runs the same command quickly (tiny training)."""

from cli_helpers import mtedge


def test_demo_runs_end_to_end(tmp_path):
    proc = mtedge("demo", "--out", tmp_path, "--epochs", "0.05", "--limit", "400", "--bench-iters", "10")
    out = proc.stdout
    for step in ("1. train", "2. inspect", "3. export", "4. run every task", "5. bench"):
        assert step in out, f"demo step {step!r} missing"
    assert "PASS" in out and "reload-per-switch" in out
    assert (tmp_path / "fashion-mt.mtb" / "manifest.json").exists()
    assert (tmp_path / "fashion-mt.pt").exists()
