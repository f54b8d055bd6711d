"""``python -m agr_suite.data_staging`` against a mirror of small fixture files in the real
formats (a CIFAR-10 tarball of pickled batches, a TinyImageNet zip, the two WikiText-2 zips, a
weights file), with the readers' checksums and sizes swapped for the fixtures' own, computed
here with hashlib: staged from a folder or over HTTP, the readers then load them offline;
bad input (a wrong file, an unknown name, an unreachable or absent mirror, an unwritable
folder) is exit code 2 with a message and leaves the files already there alone.

Nothing reaches the network: ``urlopen`` refuses every host but 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import accept_fixture_checksums, write_cifar, write_tinyimagenet
from text_fixtures import expected_sentences, write_classic
from torchvision.datasets import CIFAR10, CIFAR100

from agr_suite.data_staging.cli import main
from agr_suite.diffusion import metrics
from agr_suite.images import cifar, tinyimagenet
from agr_suite.pretraining.text import wikitext

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _local_network_only(monkeypatch):
    real = urllib.request.urlopen

    def local_only(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        if urllib.parse.urlparse(url).hostname != "127.0.0.1":
            raise urllib.error.URLError("network disabled in tests")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zip_folder(parent: Path, folder: str, archive: Path) -> None:
    """``parent/folder`` as the official zips hold it: paths start with ``folder/``."""
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((parent / folder).rglob("*")):
            zipped.write(path, path.relative_to(parent).as_posix())


@dataclass
class Mirror:
    folder: Path
    cifar_splits: dict[str, dict]  # name -> split -> (rows, labels)
    tiny_annotations: dict[str, str]
    hub: Path  # torch.hub's folder in this test


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Mirror:
    """A mirror folder holding every published file name, as fixtures; every checksum and
    size the readers hold swapped for the fixture's (computed here, with hashlib)."""
    build, folder = tmp_path / "build", tmp_path / "mirror"
    folder.mkdir()

    splits = {}
    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        splits[name] = write_cifar(build / name, name)
        accept_fixture_checksums(monkeypatch, cls, build / name)
        tarball = folder / cls.filename
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(build / name / cls.base_folder, arcname=cls.base_folder)
        monkeypatch.setattr(cls, "tgz_md5", _md5(tarball))
        monkeypatch.setitem(cifar.ARCHIVE_BYTES, name, tarball.stat().st_size)

    annotations = write_tinyimagenet(build / "tiny")
    tiny_zip = folder / tinyimagenet.ZIP_NAME
    _zip_folder(build / "tiny", tinyimagenet.FOLDER, tiny_zip)
    monkeypatch.setattr(tinyimagenet, "ZIP_MD5", _md5(tiny_zip))
    monkeypatch.setattr(tinyimagenet, "ZIP_BYTES", tiny_zip.stat().st_size)

    zips = {}
    for variant, (name, _, _) in wikitext.ZIPS.items():
        written = write_classic(build / f"wikitext-{variant}", variant)
        _zip_folder(written.parent, written.name, folder / name)
        zips[variant] = (name, (folder / name).stat().st_size, _sha256(folder / name))
    monkeypatch.setattr(wikitext, "ZIPS", zips)

    weights = folder / metrics.INCEPTION_WEIGHTS_FILENAME
    torch.save({"fc.weight": torch.arange(6.0).view(2, 3)}, weights)
    monkeypatch.setattr(metrics, "INCEPTION_WEIGHTS_SHA256", _sha256(weights))
    monkeypatch.setattr(metrics, "INCEPTION_WEIGHTS_BYTES", weights.stat().st_size)
    hub = tmp_path / "torch_hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return Mirror(folder, splits, annotations, hub)


@pytest.fixture
def http_mirror(mirror):
    """The mirror folder served by a real HTTP server on 127.0.0.1."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(mirror.folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def cifar_reference_sha256(splits: dict) -> str:
    """What the pixels and labels written into the batches hash to, in the layout
    agr_suite.images.cifar.data_sha256 documents: uint8 [N, 32, 32, 3] (a row is 1024 red,
    then green, then blue values, row-major), then the labels as int64, train then test."""
    hasher = hashlib.sha256()
    for split in ("train", "test"):
        rows, labels = splits[split]
        hasher.update(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).tobytes())
        hasher.update(np.asarray(labels, dtype=np.int64).tobytes())
    return hasher.hexdigest()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_stage_all_from_a_mirror_folder_then_every_reader_loads_offline(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["stage", "--data-dir", str(data), "--mirror", str(mirror.folder)]) == 0
    out = capsys.readouterr().out
    for name in ("cifar10", "cifar100", "tinyimagenet", "wikitext2", "inception"):
        assert f"{name}: ready" in out

    # The files landed byte for byte where the readers look.
    assert _md5(data / "cifar10" / CIFAR10.filename) == _md5(mirror.folder / CIFAR10.filename)
    tiny_zip = data / tinyimagenet.ZIP_NAME
    assert _md5(tiny_zip) == _md5(mirror.folder / tinyimagenet.ZIP_NAME)
    weights = mirror.hub / "checkpoints" / metrics.INCEPTION_WEIGHTS_FILENAME
    assert _sha256(weights) == _sha256(mirror.folder / metrics.INCEPTION_WEIGHTS_FILENAME)

    # CIFAR-10/100: the reader reads the pixels and labels that were written.
    for name in ("cifar10", "cifar100"):
        train, test = cifar.build(name, data, download=False, augment=False)
        assert cifar.data_sha256(train, test) == cifar_reference_sha256(mirror.cifar_splits[name])
    # TinyImageNet: extracted, every val image in its class folder (val_annotations.txt).
    train, test = tinyimagenet.build(data, download=False, augment=False)
    assert (len(train), len(test)) == (6, 6)
    val = data / tinyimagenet.FOLDER / "val"
    assert all((val / wnid / f).is_file() for f, wnid in mirror.tiny_annotations.items())
    # WikiText-2: both variants from the extracted classic files.
    for variant in ("raw", "tokens"):
        corpus = wikitext.load_wikitext2(data, variant=variant, download=False)
        assert corpus.source == str(data.resolve() / wikitext.VARIANTS[variant][1])
        for split in wikitext.SPLITS:
            assert corpus.splits[split] == expected_sentences(split, variant)
    # Inception: found in torch.hub's cache with downloads off, and loadable.
    assert metrics.resolve_inception_weights(allow_download=False) == weights
    torch.testing.assert_close(
        torch.load(weights)["fc.weight"], torch.arange(6.0).view(2, 3), rtol=0, atol=0
    )

    assert (
        main(
            ["check", "cifar10", "tinyimagenet", "wikitext2", "inception", "--data-dir", str(data)]
        )
        == 0
    )


def test_stage_over_http_prints_bytes_and_rate(mirror, http_mirror, tmp_path, capsys):
    data = tmp_path / "data"
    code = main(["stage", "cifar10", "wikitext2", "--data-dir", str(data), "--mirror", http_mirror])
    assert code == 0
    captured = capsys.readouterr()
    assert f"from {http_mirror}{CIFAR10.filename}" in captured.out
    size = cifar.ARCHIVE_BYTES["cifar10"]
    # not a terminal: plain progress lines, the last one the whole file and a rate
    last = [line for line in captured.err.splitlines() if CIFAR10.filename in line][-1]
    assert f"{size / 1000:.1f} kB / {size / 1000:.1f} kB (100%)" in last and last.endswith("/s")
    assert _md5(data / "cifar10" / CIFAR10.filename) == _md5(mirror.folder / CIFAR10.filename)
    assert wikitext.load_wikitext2(data, variant="raw").splits["test"] == expected_sentences("test")


def test_a_file_url_mirror_works_as_the_folder(mirror, tmp_path):
    data = tmp_path / "data"
    args = ["stage", "wikitext2", "--data-dir", str(data), "--mirror", mirror.folder.as_uri()]
    assert main(args) == 0
    assert wikitext.load_wikitext2(data, variant="tokens").splits["train"] == expected_sentences(
        "train", "tokens"
    )


def test_a_second_stage_fetches_nothing_and_changes_nothing(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    args = [
        "stage",
        "cifar10",
        "inception",
        "--data-dir",
        str(data),
        "--mirror",
        str(mirror.folder),
    ]
    assert main(args) == 0
    tarball = data / "cifar10" / CIFAR10.filename
    before = tarball.stat().st_mtime_ns
    for path in mirror.folder.iterdir():
        path.unlink()  # nothing may be fetched again
    capsys.readouterr()
    assert main(args) == 0
    assert "cifar10: already staged" in capsys.readouterr().out
    assert tarball.stat().st_mtime_ns == before


def test_a_checksum_mismatch_writes_nothing_and_exits_2(mirror, tmp_path, capsys):
    bad = mirror.folder / tinyimagenet.ZIP_NAME
    content = bytearray(bad.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size, another MD5
    bad.write_bytes(bytes(content))
    data = tmp_path / "data"

    assert (
        main(["stage", "tinyimagenet", "--data-dir", str(data), "--mirror", str(mirror.folder)])
        == 2
    )
    err = capsys.readouterr().err
    assert f"MD5 {_md5(bad)}, expected {tinyimagenet.ZIP_MD5}" in err
    assert "Nothing was written" in err and "Traceback" not in err
    assert files_under(data) == []  # no file in place, no temporary file left


def test_a_file_already_there_is_never_overwritten_by_a_bad_one(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    partial_zip = data / tinyimagenet.ZIP_NAME
    partial_zip.parent.mkdir(parents=True)
    partial_zip.write_bytes(b"the first bytes of an interrupted download")
    (mirror.folder / tinyimagenet.ZIP_NAME).write_bytes(b"not the zip")

    assert (
        main(["stage", "tinyimagenet", "--data-dir", str(data), "--mirror", str(mirror.folder)])
        == 2
    )
    assert "left as it was" in capsys.readouterr().err
    assert partial_zip.read_bytes() == b"the first bytes of an interrupted download"
    assert files_under(data) == [tinyimagenet.ZIP_NAME]

    # a good file in place is kept, whatever the mirror holds
    good = mirror.hub / "checkpoints" / metrics.INCEPTION_WEIGHTS_FILENAME
    good.parent.mkdir(parents=True)
    good.write_bytes((mirror.folder / metrics.INCEPTION_WEIGHTS_FILENAME).read_bytes())
    (mirror.folder / metrics.INCEPTION_WEIGHTS_FILENAME).write_bytes(b"corrupted")
    assert main(["stage", "inception", "--mirror", str(mirror.folder)]) == 0
    assert _sha256(good) == metrics.INCEPTION_WEIGHTS_SHA256


def test_check_finds_an_extracted_file_that_no_longer_verifies(mirror, tmp_path, capsys):
    """The reader extracts its tarball over missing files only: a corrupted one is reported."""
    data = tmp_path / "data"
    assert main(["stage", "cifar10", "--data-dir", str(data), "--mirror", str(mirror.folder)]) == 0
    batch = data / "cifar10" / CIFAR10.base_folder / "data_batch_1"
    content = bytearray(batch.read_bytes())
    content[-1] ^= 0xFF
    batch.write_bytes(bytes(content))
    assert main(["check", "cifar10", "--data-dir", str(data)]) == 2
    out = capsys.readouterr().out
    assert "data_batch_1 in" in out and "fail torchvision's MD5 check" in out


def test_check_names_the_stage_command_for_what_is_missing(tmp_path, capsys):
    data = tmp_path / "empty"
    assert main(["check", "cifar10", "wikitext2", "--data-dir", str(data)]) == 2
    captured = capsys.readouterr()
    assert "cifar10: missing" in captured.out and "wikitext2: missing" in captured.out
    command = f"python -m agr_suite.data_staging stage cifar10 wikitext2 --data-dir {data}"
    assert command in captured.err


def test_list_shows_each_name_size_place_and_status(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        main(["stage", "wikitext2", "--data-dir", str(data), "--mirror", str(mirror.folder)]) == 0
    )
    capsys.readouterr()
    assert main(["list", "--data-dir", str(data)]) == 0
    rows = {
        line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line[0] != " "
    }
    assert list(rows) == ["cifar10", "cifar100", "tinyimagenet", "wikitext2", "inception"]
    assert " present " in rows["wikitext2"]
    assert all(" missing " in rows[name] for name in rows if name != "wikitext2")
    size = (mirror.folder / CIFAR100.filename).stat().st_size
    assert f" {size / 1000:.1f} kB " in rows["cifar100"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["stage", "imagenet"], "unknown data set 'imagenet': choose from cifar10, cifar100"),
        (["check", "cifar10", "mnist"], "unknown data set 'mnist'"),
        (["stage", "cifar10", "--mirror", "/no/such/folder"], "/no/such/folder is not a folder"),
    ],
)
def test_bad_names_and_absent_mirror_folders_exit_2(tmp_path, capsys, args, message):
    assert main([*args, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unreachable_mirror_exits_2_and_writes_nothing(mirror, tmp_path, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "data"
    assert (
        main(["stage", "cifar10", "--data-dir", str(data), "--mirror", f"http://127.0.0.1:{port}"])
        == 2
    )
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}/{CIFAR10.filename}: unreachable" in err
    assert files_under(data) == []


def test_without_a_mirror_the_publishers_urls_are_tried_and_named(mirror, tmp_path, capsys):
    assert main(["stage", "wikitext2", "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "https://wikitext.smerity.com/wikitext-2-raw-v1.zip: unreachable" in err
    assert "--mirror URL_OR_FOLDER" in err


def test_an_unwritable_data_dir_exits_2(mirror, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    args = ["stage", "cifar10", "--data-dir", str(blocker / "data"), "--mirror", str(mirror.folder)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot write to {blocker / 'data' / 'cifar10'}" in err and "--data-dir" in err


@pytest.mark.slow  # a fresh interpreter imports the suite (several seconds)
def test_the_module_cli_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agr_suite.data_staging",
            "check",
            "cifar10",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "python -m agr_suite.data_staging stage cifar10" in result.stderr
    assert "Traceback" not in result.stderr
