"""User errors leave the CLI as one `error:` line and a non-zero exit status, never a traceback."""

from __future__ import annotations

from cli_helpers import mtedge

from toolchain.cli import main


def test_an_existing_output_bundle_is_an_error_line(tmp_path):
    out = tmp_path / "taken.mtb"
    out.mkdir()
    proc = mtedge("export", "zoo:fashion-mt", "-o", out, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {out} exists; pass --force to replace it" in proc.stderr
    assert "Traceback" not in proc.stderr and out.is_dir() and not any(out.iterdir())


def test_a_usage_error_is_an_error_line_with_the_usage(capsys):
    assert main(["export", "zoo:fashion-mt", "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert "error: No such option '--no-such-option'" in err and "Usage: mtedge export" in err


def test_a_command_that_exits_with_a_message_prints_it_as_an_error(monkeypatch, capsys):
    import toolchain.commands.doctor as doctor

    def refuse(*args, **kwargs):
        raise SystemExit("the machine has no CPU")

    monkeypatch.setattr(doctor.doctor, "callback", refuse)
    assert main(["doctor"]) == 1
    assert "error: the machine has no CPU" in capsys.readouterr().err
