"""bench/data_bench.py (the trainers' steps fed by their real input pipelines against the same
step on a batch held in memory) on tiny sizes, and the data-layer speed-ups it led to: batched
reads (the same batches as before) and the fast record decoding (the same values as TFDS's)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import pickle
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from realsys_cli.data import pipeline
from realsys_cli.data.dataset import RecordView, open_dataset

BENCH = Path(__file__).resolve().parents[1] / "bench"

CASE_FIELDS = {"case", "describe", "batch_size", "steps_per_round", "rounds", "threads",
               "steps_per_s_fed", "steps_per_s_held", "slowdown", "slowdown_per_round",
               "under_goal", "pipeline_alone_images_per_s", "held_step_ms", "cpu_extra"}


def load_bench():
    """bench/data_bench.py as a module (bench/ is scripts, not a package); registered in
    sys.modules, which its dataclasses need."""
    name = "bench_data_bench"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH / "data_bench.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """One TFDS dir for this module's tiny built-ins: prepared once, not once per test."""
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def digits_case(bench, tfds_dir):
    return bench.build_case("classifier-digits", tiny=True, steps=1, tfds_dir=tfds_dir)


def test_classifier_case_is_the_commands_step_state_and_pipeline(bench, digits_case):
    from realsys_cli.classifier.steps import init_state

    case = digits_case
    job, cfg, facts = case.extra["job"], case.extra["cfg"], case.extra["facts"]
    # the command's jitted step (ClassifierJob builds it in train_and_evaluate) and recipe
    assert case.train_step is job.train_step
    assert cfg.recipe == "lenet_digits" and cfg.model == "lenet"
    # the state train_and_evaluate builds: init_state of the recipe's model
    from realsys_cli.classifier.setup import make_model

    template = init_state(make_model(cfg, facts), job.steps.tx, cfg.seed)
    assert jax.tree.structure(case.state) == jax.tree.structure(template)
    # the trainer's pipeline, as it was built inline before it became training_batches
    source = open_dataset(cfg.dataset, tfds_dir=cfg.tfds_data_dir).source("train")
    inline = pipeline.train_batches(source, batch_size=cfg.batch_size, seed=cfg.seed,
                                    image_size=facts.resize_size, channels=facts.in_channels)
    for a, b in zip([next(case.make_batches()) for _ in range(1)], [next(inline)]):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # fed and held steps run the same compiled function on the same state
    held = case.put_batch(next(case.make_batches()))
    before, steps = jax.tree.structure(case.state), int(case.state["step"])
    assert bench.run_held(case, held, 1) > 0
    assert bench.run_fed(case, case.make_batches(), 1) > 0
    assert jax.tree.structure(case.state) == before
    assert int(case.state["step"]) == steps + 2


def test_measure_reports_the_promised_fields_and_the_thread_sweep(bench, digits_case):
    case = digits_case
    result = bench.measure(case, None, rounds=1)
    assert CASE_FIELDS <= set(result)
    assert result["threads"] == case.threads == 4  # train_batches' default
    assert result["slowdown"] == pytest.approx(np.median(result["slowdown_per_round"]),
                                               abs=1e-3)
    sweep = bench.measure(case, [1, 2], rounds=1)
    assert [r["threads"] for r in sweep["sweep"]] == [1, 2]
    assert "threads_needed" in sweep and sweep["threads_needed"] in (None, 1, 2)
    assert "| classifier-digits |" in bench.table([result, sweep])


def test_json_output_has_one_object_with_every_case(bench, tfds_dir, capsys):
    bench.main(["--tiny", "--cases", "classifier-digits", "--rounds", "1", "--steps", "1",
                "--tfds-data-dir", tfds_dir, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert {"date", "cpus", "load_before", "load_after", "goal", "cases"} <= set(report)
    assert report["goal"] == 0.05 and report["tiny"] is True
    (case,) = report["cases"]
    assert CASE_FIELDS <= set(case) and case["case"] == "classifier-digits"


def test_unknown_case_is_refused(bench):
    with pytest.raises(SystemExit, match="unknown case"), \
            contextlib.redirect_stderr(io.StringIO()):
        bench.main(["--cases", "nope", "--tiny"])


@pytest.mark.slow
def test_every_case_builds_and_steps(bench, tmp_path, tfds_dir):
    """Each trainer's case at tiny sizes: built, one fed and one held step."""
    for name in bench.CASES:
        case = bench.build_case(name, tiny=True, workdir=tmp_path, steps=1, tfds_dir=tfds_dir)
        held = case.put_batch(next(case.make_batches()))
        bench.run_held(case, held, 1)
        bench.run_fed(case, case.make_batches(), 1)
        if name == "jpeg-224":
            assert case.extra["recipe"] == "alexnet_imagenette"
            assert case.extra["model"] == "alexnet"


def test_gan_and_frames_cases_use_their_commands_state(bench, tfds_dir):
    from realsys_cli.gan.steps import build

    gan = bench.build_case("gan-digits", tiny=True, steps=1, tfds_dir=tfds_dir)
    cfg, facts = gan.extra["cfg"], gan.extra["facts"]
    _, state = build(cfg, image_size=facts.image_size, channels=facts.channels)
    assert jax.tree.structure(gan.state) == jax.tree.structure(state)
    frames = bench.build_case("frames", tiny=True, steps=1, tfds_dir=tfds_dir)
    assert frames.train_step is frames.extra["job"].train_step
    batch = next(frames.make_batches())
    assert set(batch) == {"video"} and batch["video"].dtype == np.uint8


def test_jpeg_folder_is_320_px_jpegs_of_two_classes(bench, tmp_path):
    from PIL import Image

    root = bench.make_jpeg_folder(tmp_path / "jpegs", per_class=3, val_per_class=1)
    files = sorted((root / "train").glob("*/*.jpg"))
    assert len(files) == 6 and {f.parent.name for f in files} == {"class0", "class1"}
    with Image.open(files[0]) as im:
        assert im.format == "JPEG" and im.size == (320, 320) and im.mode == "RGB"
    assert len(list((root / "val").glob("*/*.jpg"))) == 2


# ------------------------------------------------------------ the data layer's speed-ups
def _tfds_view(dataset, split):
    """The same split decoded by TFDS itself (the path before the fast decoding)."""
    return RecordView(dataset.builder.as_data_source(split=split), dataset.keys)


def _same_records(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key == "label":
            assert type(a[key]) is int and a[key] == b[key]
        else:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("spec", ["digits/train=40,test=8", "shapes/size=32,train=30,test=6",
                                  "moving-digits/train=6,test=2,frames=4"])
def test_fast_decoding_gives_tfds_values(spec, cached, monkeypatch):
    """Read from the in-memory copy of a small split, or record by record from its files."""
    from realsys_cli.data.dataset import ArrayRecords

    if not cached:
        monkeypatch.setattr(ArrayRecords, "CACHE_LIMIT_BYTES", 0)
    dataset = open_dataset(spec)
    fast, slow = dataset.source("train"), _tfds_view(dataset, "train")
    assert fast._decoders is not None  # the built-ins take the fast path
    assert fast._source._cacheable is cached
    _same_records(fast[1], slow[1])  # a single read before any batch: never fills the cache
    assert fast._source._cache is None
    indices = [5, 0, len(fast) - 1, 3, 3]
    for a, b in zip(fast.__getitems__(indices), slow.__getitems__(indices), strict=True):
        _same_records(a, b)
    assert (fast._source._cache is not None) is cached
    _same_records(fast[-1], slow[len(slow) - 1])
    with pytest.raises(IndexError):
        fast[len(fast)]
    copy = pickle.loads(pickle.dumps(fast._source))  # to grain worker processes: no cache
    assert copy._cache is None and copy[2] == fast._source[2]


def test_fast_decoding_of_a_folder_gives_tfds_values(tmp_path):
    from test_data_folder import make_folder

    make_folder(tmp_path / "folder")
    dataset = open_dataset("folder", data_dir=tmp_path / "folder")
    for split in dataset.splits:
        fast, slow = dataset.source(split), _tfds_view(dataset, split)
        assert fast._decoders is not None and len(fast) == len(slow)
        for i in range(len(fast)):
            _same_records(fast[i], slow[i])


@pytest.mark.parametrize(("n", "batch", "shard", "epochs"), [
    (37, 4, pipeline.Shard(), 3), (37, 5, pipeline.Shard(1, 3), 2),
    (50, 7, pipeline.Shard(0, 2), 1)])
def test_batched_reads_give_the_record_by_record_batches(n, batch, shard, epochs):
    """train_batches reads a batch of indices at once: the same batches (and iterator states,
    so checkpoints of either resume in the other) as shuffling and batching the records."""
    source = [{"image": np.full((5 + i % 3, 5, 1), i, np.uint8), "label": i} for i in range(n)]
    old = (pipeline.shard_of(source, shard).shuffle(seed=3)
           .repeat(epochs, reseed_each_epoch=True)
           .map(pipeline._prepare_record(4, 3))
           .batch(batch, drop_remainder=True, batch_fn=pipeline._stack))
    old_it = iter(old.to_iter_dataset(pipeline._read_options(2, 4)))
    new_it = pipeline.train_batches(source, batch_size=batch, seed=3, image_size=4, channels=3,
                                    shard=shard, num_epochs=epochs, num_threads=2, prefetch=4)
    old_batches, new_batches = list(old_it), list(new_it)
    assert len(old_batches) == len(new_batches) >= epochs * 2
    for a, b in zip(old_batches, new_batches, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])
    assert old_it.get_state() == new_it.get_state()
