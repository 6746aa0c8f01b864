"""Atomic writes: a reader sees the old file or the whole new one, whatever happens mid-write."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from padiff_graph import LayerMap, LayerPair
from padiff_graph.core.atomic import atomic_file, write_atomically

ROOT = Path(__file__).resolve().parent.parent


def test_writes_text_and_bytes_with_ordinary_permissions(tmp_path) -> None:
    old_umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "deep" / "report.html", "<p>é</p>")
        write_atomically(tmp_path / "dump.bin", b"\x00\x01")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "deep" / "report.html").read_text(encoding="utf-8") == "<p>é</p>"
    assert (tmp_path / "dump.bin").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((tmp_path / "dump.bin").stat().st_mode) == 0o644  # not mkstemp's 0o600


def test_replacing_keeps_the_files_permissions(tmp_path) -> None:
    target = tmp_path / "map.yaml"
    target.write_text("old")
    target.chmod(0o640)
    write_atomically(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_an_error_mid_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "report.json"
    target.write_text('{"complete": true}')
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as stream:
        stream.write(b'{"comple')
        raise KeyboardInterrupt
    assert target.read_text() == '{"complete": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_killed_run_leaves_the_previous_map_loadable(tmp_path) -> None:
    """SIGKILL after the new text hit the disk but before the rename: the next run reads the old map."""
    target = tmp_path / "map.yaml"
    LayerMap([LayerPair("fc", "fc")]).save(target)
    script = textwrap.dedent(
        f"""
        import os, signal
        from padiff_graph import LayerMap, LayerPair
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die between write and rename
        LayerMap([LayerPair("fc", "head.fc"), LayerPair("out", "out")]).save({str(target)!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == -9
    assert LayerMap.load(target).raw_of("fc") == "fc"  # the old, complete map
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "map.yaml"]
    assert all(name.startswith(".map.yaml.") and name.endswith(".tmp") for name in leftovers)


def test_a_killed_first_write_leaves_no_file_at_all(tmp_path) -> None:
    target = tmp_path / "report.html"
    script = (
        "import os, signal\nfrom padiff_graph.core.atomic import write_atomically\n"
        "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"write_atomically({str(target)!r}, '<html>' * 100000)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert not target.exists()


def test_an_unwritable_target_is_a_one_line_error(tmp_path) -> None:
    from click.testing import CliRunner

    from padiff_graph.cli import main
    from padiff_graph.errors import OutputError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_atomically(blocker / "report.html", "x")  # a file where a folder should be
    example = ROOT / "examples" / "identical.py"
    result = CliRunner().invoke(
        main, ["check", f"{example}:base", f"{example}:raw", "--html", str(blocker / "r.html"), "-q"]
    )
    assert result.exit_code == 2 and "error: cannot write" in result.output and "Traceback" not in result.output
