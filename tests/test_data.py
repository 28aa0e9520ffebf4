"""Data sets: built-in sets, the user's own files, and every way a user file can be wrong."""
from __future__ import annotations

import os
import re
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill_core.data import DATASETS, load_dataset
from distill_core.data import user_files
from distill_core.data.base import split_and_normalise
from distill_core.errors import DataError

BUILTIN = [e.name for e in DATASETS if not e.extra.get("user_file")]
SMALL = {"mnist1d": {"num_samples": 600}, "moons": {"n_samples": 200}, "circles": {"n_samples": 200},
         "spirals": {"n_samples": 200}, "blobs": {"n_samples": 200}}
TOTAL = {"digits": 1797, "mnist-5k": 5000, "mnist1d": 600, "moons": 200, "circles": 200,
         "spirals": 198, "blobs": 200, "breast-cancer": 569, "wine": 178}  # spirals: 200 // 3 arms * 3


@pytest.fixture(scope="module")
def builtin_cache():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_dataset(name, **SMALL.get(name, {}))
        return cache[name]

    return get


def data_error(fn, words: str, path) -> DataError:
    """Assert fn() raises a DataError naming `path` whose message (path aside) matches `words`."""
    with pytest.raises(DataError) as e:
        fn()
    message = str(e.value)
    assert str(path) in message, message
    # Match the words against the rest of the message: tmp_path itself holds the test's name.
    assert re.search(words, message.replace(str(path), "<path>")), message
    return e.value


# ---------------------------------------------------------------------------------------------
# Built-in sets


def test_user_file_sets_are_registered():
    assert {"csv", "npz", "images"} <= set(DATASETS.names())
    assert set(BUILTIN) >= {"digits", "mnist-5k", "mnist1d", "moons", "circles", "spirals", "blobs", "breast-cancer", "wine"}


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_loads(name, builtin_cache):
    b = builtin_cache(name)
    info = b.info
    assert info.num_classes == len(info.class_names) >= 2
    assert info.source
    sizes = b.sizes()
    assert all(n > 0 for n in sizes.values())
    assert sum(sizes.values()) == TOTAL[name]
    for split in ("train", "val", "test"):
        x, y = b.split(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == tuple(info.input_shape)
        assert len(x) == len(y)
        assert int(y.min()) >= 0 and int(y.max()) < info.num_classes
        assert torch.isfinite(x).all()
    assert set(b.y_train.tolist()) == set(range(info.num_classes))  # every class is trained on
    assert info.params["split_seed"] == 0  # load_dataset records the knobs


def test_split_is_a_partition():
    x = np.arange(90, dtype=np.float32)[:, None]  # the value is the sample's index
    y = np.repeat(np.arange(3), 30)
    xtr, ytr, xva, yva, xte, yte = split_and_normalise(
        x, y, seed=1, val_fraction=0.2, test_fraction=0.2, where="t", normalise="none")
    ids = [set(t[:, 0].long().tolist()) for t in (xtr, xva, xte)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == set(range(90))
    for t, lab in ((xtr, ytr), (xva, yva), (xte, yte)):
        assert torch.equal(lab, torch.from_numpy(y[t[:, 0].long().numpy()]))  # labels follow inputs
    assert sorted(torch.bincount(yva).tolist()) == [6, 6, 6]  # stratified


@pytest.mark.parametrize("name", ["digits", "moons"])
def test_determinism(name):
    knobs = SMALL.get(name, {})
    a, b = load_dataset(name, **knobs), load_dataset(name, **knobs)
    for s in ("train", "val", "test"):
        assert all(torch.equal(u, v) for u, v in zip(a.split(s), b.split(s)))
    c = load_dataset(name, split_seed=1, **knobs)
    assert a.sizes() == c.sizes()
    assert not torch.equal(a.x_train, c.x_train)


def test_normalisation_uses_training_split(builtin_cache):
    d = builtin_cache("digits")  # global: one mean / std
    assert abs(float(d.x_train.mean())) < 1e-3 and abs(float(d.x_train.std()) - 1) < 1e-2
    assert abs(float(d.x_val.mean())) > 1e-5  # validation is not re-centred on itself
    m = builtin_cache("blobs")  # feature: per-column mean / std
    assert torch.allclose(m.x_train.mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(m.x_train.std(0, unbiased=False), torch.ones(2), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Good user files


def write_csv(path: Path, rows: list[str], header="a,b,c,label") -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def good_rows(n_per=10, labels=("emu", "cat", "dog")):
    rng = np.random.default_rng(0)
    return [f"{rng.normal():.3f},{rng.normal() + i:.3f},{i},{lab}" for i, lab in enumerate(labels) for _ in range(n_per)]


def test_csv_string_labels(tmp_path):
    p = write_csv(tmp_path / "t.csv", good_rows())
    b = load_dataset("csv", path=str(p))
    assert b.info.kind == "vector" and b.info.input_shape == (3,)
    assert b.info.class_names == ["cat", "dog", "emu"]
    assert str(p) in b.info.source and b.info.params["path"] == str(p)
    assert sum(b.sizes().values()) == 30
    assert torch.allclose(b.x_train.mean(0), torch.zeros(3), atol=1e-4)
    # column c equals the row's position in ("emu", "cat", "dog"): check labels follow rows
    x_all = torch.cat([b.x_train, b.x_val, b.x_test])[:, 2]
    y_all = torch.cat([b.y_train, b.y_val, b.y_test])
    for cls in range(3):
        assert len(set(x_all[y_all == cls].tolist())) == 1


def test_csv_int_labels_and_custom_column(tmp_path):
    rows = [f"{i % 7},{i % 5},{i % 3}" for i in range(30)]
    p = write_csv(tmp_path / "t.csv", rows, header="f1, target ,f2")
    b = load_dataset("csv", path=str(p), label_column="target")
    assert b.info.class_names == ["0", "1", "2", "3", "4"]
    assert b.info.input_shape == (2,)


def test_npz_vectors(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "v.npz"
    np.savez(p, x=rng.normal(size=(40, 5)), y=np.repeat([3, 7], 20))
    b = load_dataset("npz", path=str(p))
    assert b.info.kind == "vector" and b.info.input_shape == (5,)
    assert b.info.class_names == ["3", "7"] and sum(b.sizes().values()) == 40
    assert str(p) in b.info.source


@pytest.mark.parametrize("shape, expect", [
    ((30, 10, 10), (1, 10, 10)), ((30, 3, 10, 10), (3, 10, 10)),
    ((30, 10, 10, 3), (3, 10, 10)), ((30, 1, 8, 6), (1, 8, 6)),
])
def test_npz_images(tmp_path, shape, expect):
    x = np.zeros(shape, dtype=np.uint8)
    if shape[-1] == 3:  # NHWC: channel c holds the value c
        x += np.arange(3, dtype=np.uint8)
    p = tmp_path / "i.npz"
    np.savez_compressed(p, x=x, y=np.repeat(["a", "b", "c"], 10))
    b = load_dataset("npz", path=str(p))
    assert b.info.kind == "image" and b.info.input_shape == expect and b.info.augment == "shift"
    assert tuple(b.x_train.shape[1:]) == expect
    if shape[-1] == 3:  # transposed to NCHW, not reshaped
        img = b.x_train[0]
        assert all(len(set(img[c].flatten().tolist())) == 1 for c in range(3))
        assert img[0, 0, 0] < img[1, 0, 0] < img[2, 0, 0]


def test_npz_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "t.npz"
    np.savez(p, x=rng.normal(size=(30, 4)), y=np.repeat(["b", "a", "c"], 10),
             x_test=np.full((6, 4), 5.0), y_test=np.array(["a", "c", "c", "a", "b", "b"]))
    b = load_dataset("npz", path=str(p), val_fraction=0.2)
    assert b.sizes() == {"train": 24, "val": 6, "test": 6}
    assert b.info.class_names == ["a", "b", "c"]
    assert b.y_test.tolist() == [0, 2, 2, 0, 1, 1]


def make_images(root: Path, classes=("cat", "dog", "owl"), n=6, size=10):
    """n small images per class, in several formats and modes."""
    formats = [("png", "L"), ("jpg", "RGB"), ("bmp", "RGB"), ("gif", "P"), ("png", "RGBA"), ("jpeg", "L")]
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            ext, mode = formats[i % len(formats)]
            img = Image.new("RGB", (size, size + i % 3), (40 * k, 20 * i, 200))
            img.convert(mode).save(root / c / f"{i}.{ext}")
    return root


@pytest.mark.parametrize("color, channels", [("grey", 1), ("rgb", 3)])
def test_image_folder(tmp_path, color, channels):
    root = make_images(tmp_path / "imgs")
    (root / ".DS_Store").write_text("junk")  # hidden files are ignored
    (root / "cat" / "notes.txt").write_text("not an image")
    b = load_dataset("images", path=str(root), size=8, color=color)
    assert b.info.kind == "image" and b.info.input_shape == (channels, 8, 8)
    assert b.info.class_names == ["cat", "dog", "owl"] and b.info.num_classes == 3
    assert sum(b.sizes().values()) == 18
    assert str(root) in b.info.source
    assert abs(float(b.x_train.mean())) < 1e-4


def zip_folder(folder: Path, zpath: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, prefix + p.relative_to(folder).as_posix())
    return zpath


@pytest.mark.parametrize("prefix", ["", "my_data/"])
def test_image_zip(tmp_path, monkeypatch, prefix):
    root = make_images(tmp_path / "imgs")
    z = zip_folder(root, tmp_path / "imgs.zip", prefix)
    made = []
    real = user_files.tempfile.TemporaryDirectory

    def recording(*a, **k):
        t = real(*a, **k)
        made.append(t.name)
        return t

    monkeypatch.setattr(user_files.tempfile, "TemporaryDirectory", recording)
    b = load_dataset("images", path=str(z), size=12, color="rgb")
    assert b.info.input_shape == (3, 12, 12) and b.info.class_names == ["cat", "dog", "owl"]
    assert sum(b.sizes().values()) == 18 and str(z) in b.info.source
    assert made and not os.path.exists(made[0])  # the unpacked copy is gone


# ---------------------------------------------------------------------------------------------
# Bad user files: each raises DataError naming the file and the problem


@pytest.mark.parametrize("name", ["csv", "npz", "images"])
def test_missing_file(tmp_path, name):
    p = tmp_path / "nope.dat"
    data_error(lambda: load_dataset(name, path=str(p)), "not found", p)
    with pytest.raises(DataError, match="no file given"):
        load_dataset(name)


@pytest.mark.parametrize("name", ["csv", "npz", "images"])
def test_file_over_max_mb(tmp_path, name):
    p = tmp_path / "big.zip"
    p.write_bytes(b"0" * 30_000)
    data_error(lambda: load_dataset(name, path=str(p), max_mb=0.01), "max_mb", p)


def test_csv_bad_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    data_error(lambda: load_dataset("csv", path=str(empty)), "empty", empty)

    header_only = write_csv(tmp_path / "h.csv", [])
    header_only.write_text("a,b,label\n")
    data_error(lambda: load_dataset("csv", path=str(header_only)), "no data rows", header_only)

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,label\n1,x\n1,2,3,4\n")
    data_error(lambda: load_dataset("csv", path=str(ragged)), "cannot be read as CSV", ragged)

    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"a,label\n\xff\xfe\x00\x81,\x9f\n")
    data_error(lambda: load_dataset("csv", path=str(binary)), "cannot be read as CSV", binary)

    folder = tmp_path / "dir.csv"
    folder.mkdir()
    data_error(lambda: load_dataset("csv", path=str(folder)), "is a folder", folder)


def test_csv_missing_label_column(tmp_path):
    p = write_csv(tmp_path / "t.csv", good_rows(), header="a,b,c,kind")
    data_error(lambda: load_dataset("csv", path=str(p)), r"no column named 'label'.*a, b, c, kind", p)
    semi = tmp_path / "semi.csv"
    semi.write_text("a;label\n1;x\n")
    data_error(lambda: load_dataset("csv", path=str(semi)), "comma-separated", semi)


def test_csv_non_numeric_features(tmp_path):
    rows = [f"{i},red,{i}x,{i % 2}" for i in range(20)]
    p = write_csv(tmp_path / "t.csv", rows, header="a,colour,size,label")
    err = data_error(lambda: load_dataset("csv", path=str(p)), "not numeric", p)
    assert "colour" in str(err) and "size" in str(err) and "'a'" not in str(err)


@pytest.mark.parametrize("bad", ["nan", "inf", "", "-inf"])
def test_csv_nan_or_inf(tmp_path, bad):
    rows = good_rows()
    rows[4] = f"1.0,{bad},3,cat"
    rows[9] = f"{bad},2.0,3,cat"
    p = write_csv(tmp_path / "t.csv", rows)
    data_error(lambda: load_dataset("csv", path=str(p)), r"2 row\(s\).*NaN or infinite.*data row 5", p)


def test_csv_missing_label(tmp_path):
    rows = good_rows()
    rows[0] = "1,2,3,"
    p = write_csv(tmp_path / "t.csv", rows)
    data_error(lambda: load_dataset("csv", path=str(p)), r"1 row\(s\)", p)


def test_csv_too_few_classes(tmp_path):
    p = write_csv(tmp_path / "t.csv", good_rows(labels=("cat",)))
    data_error(lambda: load_dataset("csv", path=str(p)), "at least two classes", p)


def test_csv_class_too_small_to_split(tmp_path):
    p = write_csv(tmp_path / "t.csv", good_rows() + ["1,2,3,yak"])
    data_error(lambda: load_dataset("csv", path=str(p)), r"1 sample\(s\); at least 3", p)


def test_npz_bad_contents(tmp_path):
    def save(name, **arrays):
        p = tmp_path / name
        np.savez(p, **arrays)
        return p

    x, y = np.zeros((10, 3)), np.repeat([0, 1], 5)
    p = save("len.npz", x=x, y=y[:9])
    data_error(lambda: load_dataset("npz", path=str(p)), "x has 10 samples but y has 9", p)
    p = save("nox.npz", inputs=x, y=y)
    data_error(lambda: load_dataset("npz", path=str(p)), r"no array named 'x'.*inputs, y", p)
    p = save("noy.npz", x=x)
    data_error(lambda: load_dataset("npz", path=str(p)), r"no array named 'y'", p)
    bad = x.copy()
    bad[2, 1], bad[7] = np.nan, np.inf
    p = save("nan.npz", x=bad, y=y)
    data_error(lambda: load_dataset("npz", path=str(p)), r"2 sample\(s\) contain NaN or infinite", p)
    p = save("one.npz", x=x, y=np.zeros(10))
    data_error(lambda: load_dataset("npz", path=str(p)), "at least two classes", p)
    p = save("small.npz", x=x, y=np.array([0] * 9 + [1]))
    data_error(lambda: load_dataset("npz", path=str(p)), r"1 sample\(s\)", p)
    p = save("dims.npz", x=np.zeros(10), y=y)
    data_error(lambda: load_dataset("npz", path=str(p)), r"x has shape \(10,\)", p)
    p = save("y2d.npz", x=x, y=y[:, None])
    data_error(lambda: load_dataset("npz", path=str(p)), "one value per sample", p)


def test_npz_bad_test_split(tmp_path):
    x, y = np.zeros((12, 3)), np.repeat(["a", "b"], 6)
    p = tmp_path / "t.npz"
    np.savez(p, x=x, y=y, x_test=np.zeros((4, 3)))
    data_error(lambda: load_dataset("npz", path=str(p)), "has x_test but no y_test", p)
    np.savez(p, x=x, y=y, x_test=np.zeros((4, 5)), y_test=np.array(list("abab")))
    data_error(lambda: load_dataset("npz", path=str(p)), "x_test samples have shape", p)
    np.savez(p, x=x, y=y, x_test=np.zeros((4, 3)), y_test=np.array(list("abzb")))
    data_error(lambda: load_dataset("npz", path=str(p)), "y_test has label.*z.*never occur", p)
    np.savez(p, x=x, y=y, x_test=np.zeros((4, 3)), y_test=np.array(list("aba")))
    data_error(lambda: load_dataset("npz", path=str(p)), "x has 4 samples but y has 3", p)


def test_npz_not_valid(tmp_path):
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"this is not numpy at all" * 10)
    data_error(lambda: load_dataset("npz", path=str(garbage)), "not a valid .npz", garbage)
    truncated = tmp_path / "trunc.npz"
    np.savez(truncated, x=np.zeros((10, 3)), y=np.repeat([0, 1], 5))
    truncated.write_bytes(truncated.read_bytes()[:200])
    data_error(lambda: load_dataset("npz", path=str(truncated)), "not a valid .npz", truncated)
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros((10, 3)))
    data_error(lambda: load_dataset("npz", path=str(npy)), "single array", npy)


def test_npz_never_unpickles(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([{"a": 1}] * 10, dtype=object), y=np.repeat([0, 1], 5))
    data_error(lambda: load_dataset("npz", path=str(p)), "'x' cannot be read", p)


def test_npz_unpacked_size(tmp_path):
    p = tmp_path / "z.npz"
    np.savez_compressed(p, x=np.zeros((2000, 50)), y=np.repeat([0, 1], 1000))
    assert p.stat().st_size < 0.05 * user_files.MB
    data_error(lambda: load_dataset("npz", path=str(p), max_mb=0.5), "unpack to", p)


def test_image_folder_layouts(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    data_error(lambda: load_dataset("images", path=str(empty)), "is empty", empty)

    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (5, 5)).save(flat / "a.png")
    data_error(lambda: load_dataset("images", path=str(flat)), "no class sub-folders", flat)

    one = make_images(tmp_path / "one", classes=("cat",))
    data_error(lambda: load_dataset("images", path=str(one)), "at least two classes", one)

    hollow = make_images(tmp_path / "hollow")
    (hollow / "yak").mkdir()
    (hollow / "yak" / "readme.txt").write_text("no images here")
    data_error(lambda: load_dataset("images", path=str(hollow)), "class folder 'yak' has no images", hollow)

    plain = tmp_path / "plain.txt"
    plain.write_text("hello")
    data_error(lambda: load_dataset("images", path=str(plain)), "expected a folder", plain)


def test_image_limits_and_small_classes(tmp_path):
    root = make_images(tmp_path / "imgs")
    data_error(lambda: load_dataset("images", path=str(root), max_files=10), "more than max_files=10", root)
    data_error(lambda: load_dataset("images", path=str(root), max_mb=0.001), "max_mb", root)
    small = make_images(tmp_path / "small", n=2)
    data_error(lambda: load_dataset("images", path=str(small)), r"2 sample\(s\); at least 3", small)


def test_corrupt_image(tmp_path):
    root = make_images(tmp_path / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    err = data_error(lambda: load_dataset("images", path=str(root)), "cannot read the image", root)
    assert "broken.png" in str(err)
    z = zip_folder(root, tmp_path / "imgs.zip")
    err = data_error(lambda: load_dataset("images", path=str(z)), "cannot read the image", z)
    assert "dog/broken.png" in str(err)
    assert "distill-images" not in str(err)  # the temporary folder is not shown


@pytest.mark.parametrize("entry, words", [
    ("../evil.png", "contains '..'"),
    ("cat/../../evil.png", "contains '..'"),
    ("..\\evil.png", "contains '..'"),
    ("/tmp/evil.png", "absolute path"),
    ("C:/evil.png", "absolute path"),
    ("cat/link.png", "symbolic link"),
])
def test_zip_slip_refused(tmp_path, entry, words):
    root = make_images(tmp_path / "imgs")
    z = zip_folder(root, tmp_path / "bad.zip")
    with zipfile.ZipFile(z, "a") as zf:
        info = zipfile.ZipInfo(entry)
        if "link" in entry:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr(info, b"x")
    err = data_error(lambda: load_dataset("images", path=str(z)), "unsafe entry.*" + words, z)
    assert repr(entry) in str(err)
    assert not (tmp_path / "evil.png").exists()


def test_zip_bad_or_too_big(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    data_error(lambda: load_dataset("images", path=str(bad)), "not a valid zip", bad)

    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/a.png", b"\0" * 2_000_000)
    assert big.stat().st_size < 0.1 * user_files.MB
    data_error(lambda: load_dataset("images", path=str(big), max_mb=1), "unpacks to", big)

    root = make_images(tmp_path / "imgs")
    z = zip_folder(root, tmp_path / "imgs.zip")
    data_error(lambda: load_dataset("images", path=str(z), max_files=5), "max_files=5", z)
    damaged = tmp_path / "damaged.zip"
    raw = bytearray(z.read_bytes())
    raw[100:400] = b"\0" * 300  # corrupt the first member's data, keep the directory
    damaged.write_bytes(bytes(raw))
    data_error(lambda: load_dataset("images", path=str(damaged)), "zip|image", damaged)

    hollow = tmp_path / "hollow.zip"
    with zipfile.ZipFile(hollow, "w") as zf:
        zf.writestr("notes.txt", "only text")
    data_error(lambda: load_dataset("images", path=str(hollow)), "is empty", hollow)


def test_digits_read_from_scikit_learns_file_equal_load_digits():
    from sklearn.datasets import load_digits

    from distill_core.data.builtin import digits_arrays

    images, target = digits_arrays()
    d = load_digits()
    assert np.array_equal(images, d.images) and np.array_equal(target, d.target)
