"""`atomic_write.write_text_atomically`: a file written for the user is whole or not there
(`plan --out`, `render kubernetes|terraform -o`, `import skopeo -o`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mirrorspec import atomic_write
from mirrorspec.atomic_write import write_text_atomically
from mirrorspec.errors import MirrorspecError


def test_replaces_the_file_with_a_plain_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    previous = os.umask(0o027)
    try:
        write_text_atomically(path, "new ✓")
    finally:
        os.umask(previous)
    assert path.read_text(encoding="utf-8") == "new ✓"
    assert path.stat().st_mode & 0o777 == 0o640  # 0666 less the umask, as open() would give
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_an_interruption_or_a_full_disk_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    path = tmp_path / "manifests.yaml"
    path.write_text("old")

    def fail(fd: int) -> None:
        raise raised

    monkeypatch.setattr(atomic_write.os, "fsync", fail)
    with pytest.raises(MirrorspecError if isinstance(raised, OSError) else KeyboardInterrupt) as caught:
        write_text_atomically(path, "new")
    if isinstance(raised, OSError):
        assert str(caught.value) == f"cannot write {path}: No space left on device"
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifests.yaml"]


def test_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "out.tf.json"
    with pytest.raises(MirrorspecError) as caught:
        write_text_atomically(path, "{}")
    assert str(caught.value) == f"cannot write {path}: No such file or directory"
