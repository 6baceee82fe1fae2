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
