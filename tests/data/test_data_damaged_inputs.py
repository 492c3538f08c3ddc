"""Damaged inputs: truncated or corrupt compressed files (every format alike) and crafted archives."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from herd.data.io.jsonl import JsonlReader
from herd.data.recipe.build import build
from herd.data.recipe.config import RecipeConfig, SourceConfig
from herd.data.sources.arxiv import ArxivReader
from herd.io.compression import DamagedFileError, open_read

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".zst": zstandard.ZstdCompressor(write_checksum=True).compress,
}
# 3000 distinct records (~400 KB): every format but bz2 (one 900 KB block) decodes some before a cut.
RECORDS = [{"id": f"r{i}", "text": f"record {i} " + "lorem ipsum dolor " * 20} for i in range(3000)]
DATA = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()


def _recipe(root: Path) -> RecipeConfig:
    source = SourceConfig(name="web", reader="jsonl", inputs=("in/*",))
    return RecipeConfig(name="t", sources=(source,), base_dir=root)


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_truncated_and_garbage_inputs_are_counted_and_the_build_completes(
    tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    packed = COMPRESSORS[suffix](DATA)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / f"a-good.jsonl{suffix}").write_bytes(packed)
    (inputs / f"b-truncated.jsonl{suffix}").write_bytes(packed[: len(packed) // 2])
    (inputs / f"c-garbage.jsonl{suffix}").write_bytes(b"this is not compressed at all\n" * 40)
    manifest = build(_recipe(tmp_path), tmp_path / "out")

    reader = manifest["steps"]["web"][0]
    assert reader["dropped"] == {"truncated_file": 1, "corrupt_file": 1}
    truncated = re.search(rf"b-truncated\.jsonl{re.escape(suffix)}@(\d+): truncated_file", caplog.text)
    assert truncated, caplog.text
    assert re.search(rf"c-garbage\.jsonl{re.escape(suffix)}@0: corrupt_file", caplog.text)
    # The documents decoded before the cut are kept, the one it cut is not: exactly the whole lines in
    # the first OFFSET decompressed bytes, where OFFSET is what the log line reports.
    whole_lines = DATA[: int(truncated.group(1))].count(b"\n")
    assert reader["kept"] == len(RECORDS) + whole_lines
    if suffix != ".bz2":
        assert whole_lines > 0
    assert manifest["sources"]["web"]["documents"] == len(RECORDS) + whole_lines
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_every_format_reports_damage_alike(tmp_path: Path, suffix: str) -> None:
    packed = COMPRESSORS[suffix](DATA)
    cases = {
        "empty": (b"", "truncated_file"),
        "cut": (packed[:-8], "truncated_file"),
        "flipped": (packed[:64] + bytes(b ^ 0xFF for b in packed[64:128]) + packed[128:], "corrupt_file"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(content)
        with open_read(path) as stream, pytest.raises(DamagedFileError) as caught:
            while stream.read(4096):
                pass
        assert (caught.value.reason, caught.value.path) == (reason, str(path)), name
        assert caught.value.offset <= len(DATA)
        assert str(path) in str(caught.value)


def test_a_zstd_file_of_several_frames_reads_whole(tmp_path: Path) -> None:
    compress = COMPRESSORS[".zst"]
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(compress(DATA[:1000]) + compress(DATA[1000:]))
    reader = JsonlReader()
    assert [d.id for d in reader.read_files([path])] == [r["id"] for r in RECORDS]
    assert not reader.stats.dropped


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_arxiv_archive_members_that_escape_are_left_out(tmp_path: Path) -> None:
    """A crafted archive's ``../`` and absolute members are never read into the paper nor written anywhere."""
    paper = tmp_path / "papers" / "2401.00001.tar.gz"
    paper.parent.mkdir()
    members = {
        "main.tex": b"\\begin{document}\\section{Intro} The real paper text.\\end{document}",
        "../escape.tex": b"\\section{Escape} escaped text",
        "/tmp/absolute.tex": b"\\section{Absolute} absolute text",
        "sub/../../climb.tex": b"\\section{Climb} climbed text",
    }
    paper.write_bytes(gzip.compress(_tar(members)))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    reader = ArxivReader()
    docs = list(reader.read_files([paper]))
    assert [d.text for d in docs] == ["\\section{Intro} The real paper text."]
    assert reader.stats.dropped == {"unsafe_member": 3}
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing extracted


def test_truncated_arxiv_archives_are_counted(tmp_path: Path) -> None:
    tar = _tar({f"p/{i}.tex": b"\\section{A} text " * 400 for i in range(10)})
    (tmp_path / "a.tar").write_bytes(tar[: len(tar) // 2])
    (tmp_path / "b.tar.gz").write_bytes(gzip.compress(tar)[:-10])
    (tmp_path / "c.tgz").write_bytes(b"not an archive" * 50)
    reader = ArxivReader()
    assert list(reader.read_files(sorted(tmp_path.iterdir()))) == []
    assert reader.stats.dropped == {"truncated_file": 2, "corrupt_file": 1}
