"""Output paths are checked before anything is written (issue 20, class 6): `bench.outputs`.

`bench report` must call `check_outputs(-o, --figures)` before it draws a figure; these tests pin
what the check refuses and accepts, and that it writes nothing itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.outputs import check_output_file, check_output_folder, check_outputs


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    return tmp_path


BAD_FILES = {
    "an empty path": ("", "empty"),
    "a NUL character": ("rep\x00ort.md", "NUL"),
    "a path under a file": ("afile/report.md", "is a file"),
    "a path deep under a file": ("afile/a/b/report.md", "is a file"),
    "an existing folder": ("folder", "is a folder"),
    "a dangling symlink": ("dangling", "does not exist"),
    "a path under a dangling symlink": ("dangling/report.md", "does not exist"),
    "a symlink loop": ("loop1", "loop"),
    "a path under a symlink loop": ("loop1/report.md", "loop"),
    "a name too long": ("x" * 300 + ".md", "too long"),
}
BAD_FOLDERS = {
    "an empty path": ("", "empty"),
    "an existing file": ("afile", "is a file"),
    "a path under a file": ("afile/figs", "is a file"),
    "a dangling symlink": ("dangling", "does not exist"),
    "a symlink loop": ("loop2", "loop"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_output_file_is_refused_with_one_line_naming_the_option(tmp_path, case):
    root = _tree(tmp_path)
    before = sorted(os.listdir(root))
    name, needle = BAD_FILES[case]
    with pytest.raises(BenchError) as err:
        check_output_file(str(root / name) if name else "")
    message = str(err.value)
    assert message.startswith("-o/--output: ") and needle in message and "\n" not in message, message
    assert sorted(os.listdir(root)) == before


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_a_bad_figures_folder_is_refused_with_one_line_naming_the_option(tmp_path, case):
    root = _tree(tmp_path)
    name, needle = BAD_FOLDERS[case]
    with pytest.raises(BenchError) as err:
        check_output_folder(str(root / name) if name else "")
    assert str(err.value).startswith("--figures: ") and needle in str(err.value), str(err.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_device_is_no_output_file(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for path in (tmp_path / "pipe", Path("/dev/null")):
        with pytest.raises(BenchError, match="not a regular file"):
            check_output_file(path)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root may write anywhere")
def test_a_folder_one_cannot_write_into_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(BenchError, match="permission denied"):
        check_output_file(locked / "report.md")
    with pytest.raises(BenchError, match="permission denied"):
        check_output_folder(locked)


def test_usable_outputs_are_accepted_and_nothing_is_created(tmp_path):
    root = _tree(tmp_path)
    (root / "old.md").write_text("a previous report")
    (root / "link.md").symlink_to(root / "old.md")
    for path in (root / "new.md", root / "old.md", root / "link.md", root / "sub" / "deeper" / "r.md"):
        assert check_output_file(path) == Path(os.path.abspath(path))
    for path in (root / "folder", root / "figs", root / "a" / "b" / "figs"):
        check_output_folder(path)
    check_outputs(root / "folder" / "report.html", root / "folder")  # the report beside its figures: fine
    assert not (root / "sub").exists() and not (root / "figs").exists() and not (root / "a").exists()
    assert (root / "old.md").read_text() == "a previous report"


def test_the_output_file_cannot_be_the_figures_folder(tmp_path):
    with pytest.raises(BenchError, match="also the --figures folder"):
        check_outputs(tmp_path / "out", tmp_path / "out")
