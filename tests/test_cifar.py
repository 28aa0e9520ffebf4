"""CIFAR-10/100 from the user's files: both versions, archives and folders, label modes, splits,
and every way such a file can be wrong or hostile (a pickle that would run code, a tar member
that would escape its folder or link elsewhere)."""
from __future__ import annotations

import io
import os
import pickle
import re
import tarfile

import numpy as np
import pytest
import torch

from cifar_files import FOLDERS, py2_pickle, write_archive, write_folder
from distill_core.data import load_dataset
from distill_core.data.cifar import RestrictedUnpickler
from distill_core.data.safe_archive import unpack_tar
from distill_core.errors import DataError

SIZES = {"cifar10": dict(n_train=300, n_test=60), "cifar100": dict(n_train=400, n_test=200)}
CASES = [(n, v) for n in ("cifar10", "cifar100") for v in ("python", "binary")]


def data_error(fn, words: str, *names) -> str:
    with pytest.raises(DataError) as e:
        fn()
    message = str(e.value)
    for name in names:
        assert str(name) in message, message
    assert re.search(words, message), message
    return message


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return {(n, v): write_archive(root, n, v, **SIZES[n]) for n, v in CASES}


@pytest.mark.parametrize("name,version", CASES)
def test_loads_both_versions_from_archive_and_folder(name, version, archives, home, tmp_path):
    b = load_dataset(name, path=str(archives[(name, version)]))
    k = 10 if name == "cifar10" else 100
    info = b.info
    assert (info.name, info.input_shape, info.num_classes, info.kind, info.augment) == (name, (3, 32, 32), k, "image", "crop-flip")
    assert info.class_names == [f"class_{i}" for i in range(k)]  # from the meta file
    assert version in info.source and "Krizhevsky" in info.citation
    sizes = b.sizes()
    assert sizes["train"] + sizes["val"] == SIZES[name]["n_train"] and sizes["test"] == SIZES[name]["n_test"]
    for split in ("train", "val", "test"):
        x, y = b.split(split)
        raw = getattr(b.raw, split)
        assert raw.dtype == torch.uint8 and x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert torch.equal(raw[:, 0, 0, 0].long(), y)  # each image kept its own label
        assert torch.equal(b.raw.normalise(raw), x)  # the float inputs are the normalised uint8 images
    # per-channel statistics of the training split: normalised, each channel has mean 0 and std 1
    assert torch.allclose(b.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(b.x_train.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-4)
    # the extracted folder (and the folder above it) give the same data
    with tarfile.open(archives[(name, version)]) as tf:
        tf.extractall(tmp_path, filter="data")
    for path in (tmp_path, tmp_path / FOLDERS[(name, version)]):
        again = load_dataset(name, path=str(path))
        assert torch.equal(again.x_train, b.x_train) and torch.equal(again.y_test, b.y_test)


def test_cifar100_coarse_labels_and_names(archives, home):
    for version in ("python", "binary"):
        b = load_dataset("cifar100", path=str(archives[("cifar100", version)]), labels="coarse")
        assert b.info.num_classes == 20 and b.info.class_names == [f"super_{i}" for i in range(20)]
        assert torch.equal(b.raw.train[:, 0, 0, 1].long(), b.y_train)
        assert "coarse labels" in b.info.source


def test_official_test_split_and_seeded_validation(archives, home):
    path = str(archives[("cifar10", "python")])
    a, b, c = (load_dataset("cifar10", path=path, split_seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)  # same seed, same split
    assert not torch.equal(a.y_val, c.y_val)  # another seed carves another validation set
    assert torch.equal(a.raw.test, c.raw.test)  # the test split is the official one, whatever the seed
    half = load_dataset("cifar10", path=path, val_fraction=0.5)
    assert abs(half.sizes()["val"] - 150) <= 10


def test_subset_keeps_the_first_images_of_each_class(archives, home):
    b = load_dataset("cifar10", path=str(archives[("cifar10", "binary")]), subset=10)
    y = torch.cat([b.y_train, b.y_val])
    assert torch.equal(torch.bincount(y), torch.full((10,), 10))
    assert torch.equal(torch.bincount(b.y_test, minlength=10), torch.full((10,), 2))
    assert "subset" in b.info.source


def test_archive_is_unpacked_once_into_the_cache(archives, home, monkeypatch):
    path = archives[("cifar10", "python")]
    load_dataset("cifar10", path=str(path))
    cached = list((home / "cache" / "archives").iterdir())
    assert len(cached) == 1 and (cached[0] / "cifar-10-batches-py" / "data_batch_1").is_file()
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda *a, **k: pytest.fail("unpacked a second time"))
    load_dataset("cifar10", path=str(path))


# ---------------------------------------------------------------------------------------------
# Bad and hostile input


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, home):
    folder = write_folder(tmp_path, "cifar10", "python", n_train=50, n_test=10)
    marker = tmp_path / "pwned"
    batch = folder / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": _RunsCode(marker), "labels": [0]}, protocol=2))
    data_error(lambda: load_dataset("cifar10", path=str(tmp_path)), r"refused to load posix\.system.*malicious.*nothing in it was run",
               "data_batch_1")
    assert not marker.exists()
    # every global but numpy's array reconstruction is refused, also when it would only build a value
    for payload in (pickle.dumps(__builtins__["eval"] if isinstance(__builtins__, dict) else eval),
                    pickle.dumps(io.BytesIO), pickle.dumps(np.float64(1.0))):
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            RestrictedUnpickler(io.BytesIO(payload)).load()
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(RestrictedUnpickler(io.BytesIO(py2_pickle({"a": [arr]})), encoding="latin1").load()["a"][0], arr)


def _tar_with(tmp_path, name: str, add) -> str:
    """A .tar.gz holding a valid small CIFAR-10 folder plus whatever `add(tarfile)` puts in."""
    folder = write_folder(tmp_path / "src", "cifar10", "python", n_train=50, n_test=10)
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
        add(tf)
    return str(path)


def _member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    def add(tf):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return add


@pytest.mark.parametrize("add,words", [
    (_member("../escaped.txt"), r"unsafe member '\.\./escaped\.txt' contains '\.\.'"),
    (_member("cifar-10-batches-py/../../escaped.txt"), r"contains '\.\.'"),
    (_member("/tmp/absolute.txt"), r"has an absolute path"),
    (_member("cifar-10-batches-py/link", tarfile.SYMTYPE, linkname="/etc/passwd"), r"is a symbolic link"),
    (_member("cifar-10-batches-py/hard", tarfile.LNKTYPE, linkname="cifar-10-batches-py/data_batch_1"), r"is a hard link"),
    (_member("cifar-10-batches-py/dev", tarfile.CHRTYPE), r"is a device file"),
    (_member("cifar-10-batches-py/fifo", tarfile.FIFOTYPE), r"is a named pipe"),
])
def test_unsafe_tar_members_are_refused_before_anything_is_written(tmp_path, home, add, words):
    path = _tar_with(tmp_path, "cifar-10-python.tar.gz", add)
    data_error(lambda: load_dataset("cifar10", path=path), words + r".*refusing to unpack", path)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()
    archives = home / "cache" / "archives"
    assert not archives.exists() or not any(archives.iterdir())  # nothing left behind, not even a temp folder


def test_archive_too_large_for_max_mb(archives, home):
    path = archives[("cifar100", "python")]
    data_error(lambda: unpack_tar(path, max_mb=0.5), r"unpacks to .* MB, more than max_mb=0.5", path)


def test_bad_files_and_folders_are_clear_errors(archives, tmp_path, home):
    data_error(lambda: load_dataset("cifar10"), r"no file given.*cifar-10-python\.tar\.gz")
    data_error(lambda: load_dataset("cifar10", path=str(tmp_path / "nope.tar.gz")), r"file not found", "nope.tar.gz")
    # a truncated archive
    good = archives[("cifar10", "python")].read_bytes()
    cut = tmp_path / "cut" / "cifar-10-python.tar.gz"
    cut.parent.mkdir()
    cut.write_bytes(good[: len(good) // 2])
    data_error(lambda: load_dataset("cifar10", path=str(cut)), r"not a valid \.tar\.gz archive", cut)
    # some other file
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    data_error(lambda: load_dataset("cifar10", path=str(other)), r"expected an official CIFAR archive", other)
    # a folder without CIFAR in it, and the other CIFAR set
    empty = tmp_path / "empty"
    empty.mkdir()
    data_error(lambda: load_dataset("cifar10", path=str(empty)), r"not a CIFAR-10 folder.*data_batch_1", empty)
    data_error(lambda: load_dataset("cifar10", path=str(archives[("cifar100", "python")])),
               r"holds CIFAR-100, not CIFAR-10; choose the cifar100 data set")
    # a missing batch file, a missing meta file
    folder = write_folder(tmp_path / "f", "cifar10", "python", n_train=50, n_test=10)
    (folder / "data_batch_3").unlink()
    data_error(lambda: load_dataset("cifar10", path=str(folder)), r"batch file cifar-10-batches-py/data_batch_3 is missing")
    (folder / "batches.meta").unlink()
    data_error(lambda: load_dataset("cifar10", path=str(folder)), r"meta file .*batches\.meta .*missing")
    # a garbled pickle, a truncated pickle, a pickle of the wrong shape
    folder = write_folder(tmp_path / "g", "cifar10", "python", n_train=50, n_test=10)
    batch = folder / "data_batch_2"
    raw = batch.read_bytes()
    batch.write_bytes(raw[: len(raw) // 3])
    data_error(lambda: load_dataset("cifar10", path=str(folder)), r"data_batch_2: not a valid CIFAR pickle")
    batch.write_bytes(b"\x00garbage" * 10)
    data_error(lambda: load_dataset("cifar10", path=str(folder)), r"data_batch_2: not a valid CIFAR pickle")
    batch.write_bytes(py2_pickle({"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)}))
    data_error(lambda: load_dataset("cifar10", path=str(folder)), r"data_batch_2: 'data' should be a uint8 array of shape \(N, 3072\)")
    batch.write_bytes(py2_pickle({"data": np.zeros((2, 3072), np.uint8)}))
    data_error(lambda: load_dataset("cifar10", path=str(folder)), r"data_batch_2: no 'labels' in the batch")
    batch.write_bytes(py2_pickle({"labels": [0, 12], "data": np.zeros((2, 3072), np.uint8)}))
    data_error(lambda: load_dataset("cifar10", path=str(folder)), r"labels run from 0 to 12, but the meta file names 10 classes")
    # a truncated binary batch
    folder = write_folder(tmp_path / "b", "cifar100", "binary", n_train=200, n_test=20)
    raw = (folder / "train.bin").read_bytes()
    (folder / "train.bin").write_bytes(raw[:-100])
    data_error(lambda: load_dataset("cifar100", path=str(folder)), r"train\.bin: .* bytes is not a whole number of 3,074-byte records")


def test_tarfiles_data_filter_is_a_second_line_of_defence(tmp_path, home, monkeypatch):
    """With the lab's own checks switched off, tarfile's "data" filter still refuses the member."""
    from distill_core.data import safe_archive

    monkeypatch.setattr(safe_archive, "member_problem", lambda member, root: None)
    path = _tar_with(tmp_path, "cifar-10-python.tar.gz", _member("../escaped.txt"))
    data_error(lambda: load_dataset("cifar10", path=path), r"refused by tarfile's data filter.*outside the destination.*refusing to unpack", path)
    assert not (tmp_path / "escaped.txt").exists()
