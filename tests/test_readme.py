"""The README's Python example runs as written (in a temporary directory)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_block_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    # the trunk and shared segments run once, then each requested branch
    assert out.strip() == ("['trunk', 'shared_garment_group_silhouette', 'shared_garment_group', 'denoise', 'garment'] "
                           "(1, 2, 28, 28) (1, 10)")
    assert (tmp_path / "readme.mtb" / "manifest.json").exists()


def test_readme_library_chain_runs(tmp_path, monkeypatch, capsys):
    """The second block: compress -> export -> quantize -> verify -> build -> run, one call each."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2 and "toolchain.compress(" in blocks[1], "README has no library-chain example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[1], "README.md", "exec"), {})
    ratio, fp16_written, tasks = capsys.readouterr().out.strip().split(" ", 2)
    assert float(ratio) <= 0.7 and fp16_written == "True"
    assert tasks == "['garment', 'group', 'silhouette', 'denoise']"
    assert (tmp_path / "fashion-pruned.pt").exists()
    assert list((tmp_path / "chain.mtb" / "engines").iterdir())  # host-cpu blobs recorded
