import gzip
import pickle

import numpy as np
import pytest
import torch

from bnopt.training.data import (
    TRAIN_SIZES,
    DataError,
    Dataset,
    DeviceData,
    fake_dataset,
    load_dataset,
    random_crop_flip,
)


def test_digits_fixed_split_offline():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.x_train.shape == (TRAIN_SIZES["digits"], 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.x_train.dtype == torch.uint8 and a.x_train.max() == 255
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert set(a.y_test.tolist()) == set(range(10))


def test_synthetic_is_deterministic_and_sized(synthetic):
    assert synthetic.x_train.shape == (TRAIN_SIZES["synthetic"], 3, 8, 8)
    assert torch.equal(synthetic.x_train, load_dataset("synthetic").x_train)


def test_prepared_file_roundtrip(tmp_path, synthetic):
    synthetic.save(tmp_path / "s.pt")
    back = Dataset.load(tmp_path / "s.pt")
    assert torch.equal(back.x_train, synthetic.x_train) and back.num_classes == 10
    (tmp_path / "bad.pt").write_bytes(b"not a tensor file")
    with pytest.raises(DataError, match="Delete it and rerun"):
        Dataset.load(tmp_path / "bad.pt")


def test_channel_statistics_are_computed_once_at_preparation(tmp_path):
    """A prepared dataset keeps its images' channel statistics, bit for bit those a job would
    compute, so no training job recomputes them (CIFAR-10's in float64: ~6 s a job)."""
    ds = load_dataset("digits")
    computed = ds.channel_stats()
    ds.save(tmp_path / "d.pt")
    back = Dataset.load(tmp_path / "d.pt")
    assert "channel_stats" in back.meta
    back.x_train = back.x_train[:0]  # the stored ones are read, not recomputed from the images
    for a, b in zip(back.channel_stats(), computed):
        assert torch.equal(a, b) and a.dtype == torch.float32


def test_device_batches_cover_each_epoch_once(synthetic):
    data = DeviceData(synthetic, torch.device("cpu"))
    it = data.train_batches(100, torch.Generator().manual_seed(0))
    # recover sample identity through the (unique) float images of one epoch: 10 batches of 100
    xs = torch.cat([next(it)[0] for _ in range(10)])
    assert xs.shape == (1000, 3, 8, 8)
    full = data.normalize(data.x_train)
    flat_full = {tuple(r) for r in full.flatten(1)[:, :12].tolist()}
    seen = [tuple(r) for r in xs.flatten(1)[:, :12].tolist()]
    assert len(set(seen)) == 1000 and set(seen) <= flat_full
    # normalisation: per-channel mean 0, std 1 over the training set
    torch.testing.assert_close(full.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(full.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)


def test_random_crop_flip_is_a_shift_or_mirror_of_the_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6) + 1
    out = random_crop_flip(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(2):
        xp = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        candidates = [xp[:, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in candidates)


def _write_cifar(root, n=20):
    """A small CIFAR-10 copy in torchvision's on-disk layout (python pickles)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar10_local_copy_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    _write_cifar(tmp_path)
    # the md5 check is for the real files; the tiny copy has the same layout, other bytes
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.num_classes == 10 and ds.x_train.dtype == torch.uint8
    # CHW order: torchvision gives HWC; pickle rows are CHW-flattened
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f)["data"][0]
    assert torch.equal(ds.x_train[0], torch.from_numpy(first.reshape(3, 32, 32)))


def _idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    path.write_bytes(header + arr.tobytes())


def _write_fashion(root, gzipped: bool, folder: str = "FashionMNIST"):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, arr in [("train-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28))),
                      ("train-labels-idx1-ubyte", rng.integers(0, 10, 30)),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28))),
                      ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 10))]:
        _idx(raw / name, arr)
        if gzipped:  # as distributed (Zalando's release, Debian's dataset-fashion-mnist)
            (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
            (raw / name).unlink()
    return raw


def test_fashion_mnist_local_copy_plain_or_gzipped_reads_as_torchvision_does(tmp_path):
    from torchvision.datasets import FashionMNIST

    _write_fashion(tmp_path / "plain", gzipped=False)
    _write_fashion(tmp_path / "gz", gzipped=True)
    plain = load_dataset("fashion_mnist", tmp_path / "plain")
    gz = load_dataset("fashion_mnist", tmp_path / "gz")
    assert plain.x_train.shape == (30, 1, 28, 28) and plain.x_test.shape == (10, 1, 28, 28)
    assert plain.x_train.dtype == torch.uint8 and plain.y_train.dtype == torch.int64
    tv = FashionMNIST(str(tmp_path / "plain"), train=True, download=False)
    assert torch.equal(plain.x_train[:, 0], tv.data) and torch.equal(plain.y_train, tv.targets)
    for a, b in zip((plain.x_train, plain.y_train, plain.x_test, plain.y_test),
                    (gz.x_train, gz.y_train, gz.x_test, gz.y_test)):
        assert torch.equal(a, b)


def test_mnist_local_copy_reads_as_torchvision_does(tmp_path):
    """MNIST: the same IDX files in torchvision's MNIST/raw, plain or gzipped."""
    from torchvision.datasets import MNIST

    _write_fashion(tmp_path / "plain", gzipped=False, folder="MNIST")
    _write_fashion(tmp_path / "gz", gzipped=True, folder="MNIST")
    plain, gz = load_dataset("mnist", tmp_path / "plain"), load_dataset("mnist", tmp_path / "gz")
    tv = MNIST(str(tmp_path / "plain"), train=True, download=False)
    assert torch.equal(plain.x_train[:, 0], tv.data) and torch.equal(plain.y_train, tv.targets)
    assert torch.equal(gz.x_test, plain.x_test) and plain.num_classes == 10
    with pytest.raises(DataError, match=r"dataset 'mnist' not found .*MNIST/raw"):
        load_dataset("mnist", tmp_path / "gz" / "nothing")


def test_a_damaged_idx_file_is_named(tmp_path):
    raw = _write_fashion(tmp_path, gzipped=False)
    labels = raw / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(good[:-3])
    with pytest.raises(DataError,
                       match="t10k-labels-idx1-ubyte holds 7 values where its header says 10"):
        load_dataset("fashion_mnist", tmp_path)
    labels.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is not a uint8 IDX file"):
        load_dataset("fashion_mnist", tmp_path)
    labels.write_bytes(good)
    (raw / "t10k-images-idx3-ubyte").unlink()  # one the presence check does not look for
    with pytest.raises(DataError, match="is incomplete .*t10k-images-idx3-ubyte is missing"):
        load_dataset("fashion_mnist", tmp_path)


def test_missing_copy_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(e.value)
    assert "nowhere" in msg and "cifar-10-batches-py" in msg and "data_root: null" in msg


def test_corrupt_copy_is_reported_not_crashed(tmp_path):
    _write_cifar(tmp_path)  # md5 does not match the real archive's
    with pytest.raises(DataError, match="torchvision said"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("name", ["digits", "synthetic", "dln"])
def test_fake_data_has_the_real_sizes_shapes_and_types(name):
    """The benchmarks' random stand-in (sizes from TRAIN_SIZES/TEST_SIZES/INPUT_SHAPES/
    NUM_CLASSES) matches what the loader really returns."""
    real, fake = load_dataset(name), fake_dataset(name)
    for f in ("x_train", "y_train", "x_test", "y_test"):
        assert getattr(fake, f).shape == getattr(real, f).shape, f
        assert getattr(fake, f).dtype == getattr(real, f).dtype, f
    assert fake.num_classes == real.num_classes and fake.num_outputs == real.num_outputs


def test_image_size_resizes_images_and_keeps_labels():
    from bnopt.training.data import fake_dataset, input_shape

    native = load_dataset("digits")
    big = load_dataset("digits", image_size=16)
    assert big.shape == (1, 16, 16) == input_shape("digits", 16) and big.x_train.dtype == torch.uint8
    assert torch.equal(big.y_train, native.y_train) and len(big.x_test) == len(native.x_test)
    # bilinear resizing keeps the mean brightness
    assert abs(big.x_train.float().mean() - native.x_train.float().mean()) < 2
    assert fake_dataset("digits", n_train=4, n_test=2, image_size=16).shape == (1, 16, 16)
    assert load_dataset("dln", image_size=16).shape == (10,)  # vectors are left alone
