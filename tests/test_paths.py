"""``herd.paths.contained``: names read from files never leave their directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import HerdError
from herd.paths import contained


@pytest.mark.parametrize(
    "name", ["model-00001.safetensors", "shards/part-0.bin", "a/../b.bin", "./c.bin", "a/b/../../d"]
)
def test_names_inside_are_joined(name: str, tmp_path: Path) -> None:
    assert contained(tmp_path, name, "index.json") == tmp_path / name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../secret", "leaves"),
        ("a/../../secret", "leaves"),
        ("..\\..\\secret", "leaves"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\system.ini", "absolute"),
        ("", "invalid path"),
        ("a\x00b", "invalid path"),
    ],
)
def test_escaping_names_are_refused_naming_the_file(name: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(HerdError, match=f"^index.json: .*{problem}"):
        contained(tmp_path, name, "index.json")


def test_a_link_the_directory_owner_made_is_followed(tmp_path: Path) -> None:
    """The Hugging Face hub cache's layout: each shard a link to ../../blobs/HASH."""
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "abc").write_bytes(b"weights")
    snapshot = tmp_path / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to("../../blobs/abc")
    assert contained(snapshot, "model.safetensors", "index.json").read_bytes() == b"weights"
