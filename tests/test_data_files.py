"""User files (npz, csv, idx), the validation split, configs and layouts."""
import gzip

import numpy as np
import pytest
from pydantic import ValidationError

from netcli.data import DataError, Rows, load_data, parse_data_config, select
from netcli.data.base import make_splits, validation_indices
from netcli.data.idx import encode_idx


def load(seed=0, base_dir=None, **data):
    return load_data(parse_data_config(data), seed, base_dir=base_dir)


# -- the validation split ----------------------------------------------------
def test_validation_split_is_deterministic_disjoint_and_complete():
    tr, va = validation_indices(1000, 0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(1000))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # original order kept
    tr2, va2 = validation_indices(1000, 0.1, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, validation_indices(1000, 0.1, seed=4)[1])
    assert len(validation_indices(1000, 0.0, seed=3)[1]) == 0


def test_make_splits_limit_and_transform():
    x, y = np.arange(100).reshape(100, 1), np.arange(100) % 3
    config = parse_data_config({"dataset": "sine", "limit": 20, "val_fraction": 0.25})
    s = make_splits(config, 0, (x, y), (x + 1000, y), task="classification", num_classes=3,
                    transform=lambda a: a * 2)
    assert len(s.train_x) == 15 and len(s.val_x) == 5 and len(s.test_x) == 4
    assert set(s.train_x[:, 0] // 2) | set(s.val_x[:, 0] // 2) == set(range(20))
    np.testing.assert_array_equal(s.train_y, (s.train_x[:, 0] // 2) % 3)  # x and y stay paired
    np.testing.assert_array_equal(s.test_x[:, 0], (np.arange(4) + 1000) * 2)


# -- npz -----------------------------------------------------------------------
def test_npz_classification_with_test_file_and_relative_paths(tmp_path, rng):
    x, y = rng.standard_normal((50, 3, 4)), rng.integers(0, 5, 50)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:7] + 1, y=y[:7])
    s = load(seed=2, base_dir=tmp_path, dataset="npz", path="train.npz", test_path="test.npz", val_fraction=0.2)
    assert s.task == "classification" and s.num_classes == int(y.max()) + 1
    assert s.input_shape == (3, 4) and s.target_shape == ()
    _, va = validation_indices(50, 0.2, seed=2)
    np.testing.assert_array_equal(s.val_x, x[va].astype(np.float32))
    np.testing.assert_array_equal(s.val_y, y[va])
    np.testing.assert_array_equal(s.test_x, (x[:7] + 1).astype(np.float32))
    assert s.train_x.dtype == np.float32 and s.train_y.dtype == np.int64
    rows = {r.tobytes() for r in s.train_x} & {r.tobytes() for r in s.val_x}
    assert not rows  # train and val are disjoint


def test_npz_regression_keys_and_no_test(tmp_path, rng):
    np.savez(tmp_path / "d.npz", feats=rng.standard_normal((30, 2)), target=rng.standard_normal(30))
    s = load(dataset="npz", path=str(tmp_path / "d.npz"), x_key="feats", y_key="target")
    assert s.task == "regression" and s.num_classes is None and s.target_shape == (1,)
    assert s.test_x is None and s.test_y is None and s.train_y.dtype == np.float32


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.ones((4, 2))}, r"no array 'y' \(it has: x\)"),
    ({"x": np.ones(4), "y": np.zeros(4, int)}, "shape \\(4,\\); expected \\(samples, features"),
    ({"x": np.array([[1.0], [np.nan]]), "y": np.zeros(2, int)}, "NaN or inf \\(first in sample 1\\)"),
    ({"x": np.ones((4, 2)), "y": np.zeros(3, int)}, "3 targets for 4 samples"),
    ({"x": np.ones((4, 2)), "y": np.array([0, 1, -1, 2])}, "integers 0..K-1"),
    ({"x": np.ones((4, 2)), "y": np.array([0, 5000, 1, 2])}, "set task: regression"),
    ({"x": np.array([["a"], ["b"]]), "y": np.zeros(2, int)}, "dtype <U1; expected real numbers"),
    ({"x": np.ones((2, 3), complex), "y": np.zeros(2, int)}, "features have dtype complex128; expected real"),
    ({"x": np.ones((2, 3)), "y": np.ones(2, np.complex64)}, "targets have dtype complex64; expected real"),
    ({"x": np.array([[{}], [{}]], dtype=object), "y": np.zeros(2, int)}, "not a readable .npz"),
])
def test_npz_bad_files_name_the_file(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match) as e:
        load(dataset="npz", path=str(tmp_path / "bad.npz"))
    assert str(tmp_path / "bad.npz") in str(e.value)


def test_npz_missing_and_mismatched_test_file(tmp_path):
    with pytest.raises(DataError, match="nothere.npz: no such file"):
        load(dataset="npz", path="nothere.npz", base_dir=tmp_path)
    np.savez(tmp_path / "a.npz", x=np.ones((4, 2)), y=np.zeros(4, int))
    np.savez(tmp_path / "b.npz", x=np.ones((4, 3)), y=np.zeros(4, int))
    with pytest.raises(DataError, match=r"b.npz: test samples have shape \(3,\) but training samples \(2,\)"):
        load(dataset="npz", path="a.npz", test_path="b.npz", base_dir=tmp_path)
    (tmp_path / "c.npz").write_text("not a zip")
    with pytest.raises(DataError, match="c.npz: not a readable .npz"):
        load(dataset="npz", path="c.npz", base_dir=tmp_path)


def test_npz_explicit_task_classification_refuses_fractional_labels(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((2, 1)), y=np.array([0.5, 1.0]))
    with pytest.raises(DataError, match="set task: regression"):
        load(dataset="npz", path=str(tmp_path / "a.npz"), task="classification")


# -- npy ---------------------------------------------------------------------
def test_npy_features_stay_on_disk_until_a_batch_is_read(tmp_path, rng):
    x, y = rng.standard_normal((50, 3, 4)), rng.integers(0, 5, 50)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "tx.npy", x[:7].astype(np.float16))
    np.save(tmp_path / "ty.npy", y[:7])
    s = load(seed=2, base_dir=tmp_path, dataset="npy", features="x.npy", targets="y.npy", test_features="tx.npy",
             test_targets="ty.npy", val_fraction=0.2)
    assert all(isinstance(a, Rows) and isinstance(a.source, np.memmap) for a in (s.train_x, s.val_x, s.test_x))
    assert type(s.train_y) is np.ndarray and s.train_y.dtype == np.int64  # the targets are read whole
    tr, va = validation_indices(50, 0.2, seed=2)
    assert s.input_shape == (3, 4) and len(s.train_x) == 40 and s.train_x.shape == (40, 3, 4)
    assert s.info().input_dtype == "float32" and s.num_classes == int(y.max()) + 1
    batch = s.train_x[np.array([5, 0, 5])]  # (3, 3, 4): a batch, read and cast
    assert type(batch) is np.ndarray and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, x[tr[[5, 0, 5]]].astype(np.float32))
    np.testing.assert_array_equal(s.val_x[:], x[va].astype(np.float32))
    np.testing.assert_array_equal(select(s.val_x, slice(2, 5))[1:], x[va[3:5]].astype(np.float32))
    np.testing.assert_array_equal(s.test_x[2:4], x[2:4].astype(np.float16).astype(np.float32))
    limited = load(seed=2, base_dir=tmp_path, dataset="npy", features="x.npy", targets="y.npy", limit=10,
                   val_fraction=0.2)
    assert isinstance(limited.train_x, Rows) and len(limited.train_x) == 8 and len(limited.val_x) == 2


def test_npy_bad_files_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("netcli.data.files.CHUNK_BYTES", 64)  # the finiteness check reads 8 samples at a time
    x = np.ones((30, 2))
    x[21, 1] = np.inf
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros(30, int))
    with pytest.raises(DataError, match=r"x.npy: features contain NaN or inf \(first in sample 21\)"):
        load(dataset="npy", features=str(tmp_path / "x.npy"), targets=str(tmp_path / "y.npy"))
    np.save(tmp_path / "o.npy", np.array([[{}], [{}]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="o.npy: not a readable .npy"):
        load(dataset="npy", features=str(tmp_path / "o.npy"), targets=str(tmp_path / "y.npy"))
    with pytest.raises(DataError, match="set both test_features and test_targets"):
        load(dataset="npy", features=str(tmp_path / "x.npy"), targets=str(tmp_path / "y.npy"),
             test_features=str(tmp_path / "x.npy"))
    with pytest.raises(DataError, match="nothere.npy: no such file"):
        load(dataset="npy", features="nothere.npy", targets="y.npy", base_dir=tmp_path)


# -- csv ---------------------------------------------------------------------------
def test_csv_numeric_labels(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,4.5,1\n\n5,6,2\n7,8,1\n")
    s = load(dataset="csv", path=str(tmp_path / "d.csv"), label_column="label", val_fraction=0)
    np.testing.assert_array_equal(s.train_x, [[1, 2], [3, 4.5], [5, 6], [7, 8]])
    np.testing.assert_array_equal(s.train_y, [0, 1, 2, 1])
    assert s.task == "classification" and s.num_classes == 3 and len(s.val_x) == 0


def test_csv_class_names_and_test_file(tmp_path):
    (tmp_path / "train.csv").write_text("species;len\nsetosa;1.0\nvirginica;2.5\nversicolor;2.0\nsetosa;1.1\n")
    (tmp_path / "test.csv").write_text("species;len\nvirginica;2.4\nsetosa;0.9\n")
    s = load(dataset="csv", path="train.csv", test_path="test.csv", label_column="species", delimiter=";",
             base_dir=tmp_path, val_fraction=0)
    np.testing.assert_array_equal(s.train_y, [0, 2, 1, 0])  # sorted names: setosa, versicolor, virginica
    np.testing.assert_array_equal(s.test_y, [2, 0])
    np.testing.assert_array_equal(s.test_x, np.float32([[2.4], [0.9]]))
    assert s.num_classes == 3


def test_csv_regression(tmp_path):
    (tmp_path / "d.csv").write_text("x,price\n1,100\n2,250\n")
    s = load(dataset="csv", path=str(tmp_path / "d.csv"), label_column="price", task="regression", val_fraction=0)
    assert s.task == "regression" and s.train_y.dtype == np.float32
    np.testing.assert_array_equal(s.train_y, [[100], [250]])


@pytest.mark.parametrize("text, column, match", [
    ("a,label\n1,0\n", "lable", "no column 'lable' \\(did you mean 'label'\\?\\); columns: a, label"),
    ("a,b,label\n1,2,0\n1,x,1\n", "label", r"d.csv:3: column 'b' has 'x', not a number"),
    ("a,label\n1,0\n2,1,5\n", "label", r"d.csv:3: 3 fields, the header has 2"),
    ("a,label\n", "label", "needs a header line and at least one data row"),
    ("a,label\n1,0\nnan,1\n", "label", "NaN or inf"),
])
def test_csv_bad_files(tmp_path, text, column, match):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load(dataset="csv", path=str(tmp_path / "d.csv"), label_column=column)


def test_csv_test_file_with_unknown_class_and_text_regression(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,cat\n2,dog\n")
    (tmp_path / "b.csv").write_text("x,y\n1,cow\n")
    with pytest.raises(DataError, match="b.csv: label 'cow' does not occur in the training file"):
        load(dataset="csv", path="a.csv", test_path="b.csv", label_column="y", base_dir=tmp_path)
    with pytest.raises(DataError, match="a.csv: column 'y' holds text"):
        load(dataset="csv", path="a.csv", label_column="y", task="regression", base_dir=tmp_path)


# -- idx -----------------------------------------------------------------------------
@pytest.fixture
def idx_files(tmp_path, rng):
    x = rng.integers(0, 256, (20, 6, 5), dtype=np.uint8)
    y = rng.integers(0, 4, 20, dtype=np.uint8)
    (tmp_path / "img.gz").write_bytes(gzip.compress(encode_idx(x)))
    (tmp_path / "lab").write_bytes(encode_idx(y))
    (tmp_path / "short").write_bytes(encode_idx(y[:19]))
    return tmp_path, x, y


def test_idx_user_files_and_layouts(idx_files):
    root, x, y = idx_files
    common = dict(dataset="idx", images="img.gz", labels="lab", base_dir=root, val_fraction=0)
    s = load(**common, test_images="img.gz", test_labels="lab")
    assert s.train_x.shape == (20, 1, 6, 5) and s.num_classes == int(y.max()) + 1
    np.testing.assert_array_equal(s.train_x[:, 0], x / np.float32(255))
    np.testing.assert_array_equal(s.test_y, y)
    assert load(**common, flatten=True).train_x.shape == (20, 30)
    seq = load(**common, as_sequence=True)
    assert seq.train_x.shape == (20, 6, 5) and seq.input_shape == (6, 5)


def test_idx_bad_files(idx_files):
    root, _, _ = idx_files
    with pytest.raises(DataError, match="short: 19 labels for 20 images in .*img.gz"):
        load(dataset="idx", images="img.gz", labels="short", base_dir=root)
    with pytest.raises(DataError, match="set both test_images and test_labels"):
        load(dataset="idx", images="img.gz", labels="lab", test_images="img.gz", base_dir=root)
    with pytest.raises(DataError, match="img.gz: labels must be integers, one per image"):
        load(dataset="idx", images="img.gz", labels="img.gz", base_dir=root)


@pytest.mark.parametrize("what, data, match", [
    # 4 sizes of 2**16: their product is 2**64, which wraps to 0 in int64 and matched an empty body
    ("sizes whose product overflows", bytes([0, 0, 8, 4]) + np.full(4, 2**16, ">u4").tobytes(),
     r"IDX header says \(65536, 65536, 65536, 65536\) \(18446744073709551636 bytes\) but the file has 20 bytes"),
    ("sizes whose product overflows, with a body", bytes([0, 0, 8, 3]) + np.array([2**32 - 1] * 3, ">u4").tobytes()
     + bytes(8), "the file is truncated or corrupt"),
    ("0 dimensions", bytes([0, 0, 8, 0, 7]), r"not an IDX file \(0 dimensions"),
    ("0 dimensions, gzipped", gzip.compress(bytes([0, 0, 0x0D, 0]) + bytes(4)), r"not an IDX file \(0 dimensions"),
])
def test_invalid_idx_files_are_refused_by_name(tmp_path, idx_files, what, data, match):
    root, _, _ = idx_files
    (root / "bad").write_bytes(data)
    for images, labels in (("bad", "lab"), ("img.gz", "bad")):
        with pytest.raises(DataError, match=rf"/bad: .*{match}"):
            load(dataset="idx", images=images, labels=labels, base_dir=root)


# -- configs --------------------------------------------------------------------------
@pytest.mark.parametrize("data, match", [
    ({"dataset": "mnist", "flaten": True}, "Extra inputs are not permitted"),
    ({"dataset": "mnist", "flatten": True, "as_sequence": True}, "exclude each other"),
    ({"dataset": "mnist", "val_fraction": 1.0}, "less than 1"),
    ({"dataset": "mnist", "batch_size": 0}, "greater than 0"),
    ({"dataset": "mnst"}, "does not match any of the expected tags"),
    ({"dataset": "csv", "path": "a.csv"}, "label_column"),
    ({"dataset": "sine", "seq_len": 300}, "exceeds length"),
    ({"dataset": "reverse_digits", "seq_len": 3, "train_size": 1000}, "too many"),
])
def test_config_mistakes_are_validation_errors(data, match):
    with pytest.raises(ValidationError, match=match):
        parse_data_config(data)


def test_every_dataset_option_is_documented():
    from netcli.registry import DATASETS

    for name, cls in DATASETS.items():
        assert cls.Config.model_config["extra"] == "forbid"
        assert cls.Config.model_fields["dataset"].default == name
        for field, info in cls.Config.model_fields.items():
            assert info.description, f"{name}.{field} has no description"
