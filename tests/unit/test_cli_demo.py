"""`quicfs demo` from an installed wheel, which has no tools/: one line, never a traceback."""

from __future__ import annotations

from quicfs.cli import demo
from quicfs.cli.main import main


def test_demo_outside_a_checkout_says_where_it_runs(monkeypatch, tmp_path, capsys):
    # As in site-packages: quicfs there, and no tools/ or pyproject.toml beside it.
    monkeypatch.setattr(demo, "CHECKOUT", tmp_path)
    assert main(["demo", "start", str(tmp_path / "demo")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "source checkout" in err and "make demo" in err
    assert not (tmp_path / "demo").exists()
