"""``predict --engine ray`` on a local Ray cluster: the plain command's CSV, sharded and resumable."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from inference.cli import main
from inference.cluster.ray_engine import read_shards
from inference.formats import read_embeddings
from inference.phantoms.dicom import write_study


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[None]:
    """Two CPUs, as on a small CI runner: the model actors take half a CPU, decode tasks the rest."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("studies")
    write_study(root / "a", patient_id="A1", seed=1, malignant_side="L")
    write_study(root / "b", patient_id="B2", seed=2)
    (root / "b" / "broken.dcm").write_bytes(b"DICM" + b"\0" * 300)  # a bad file: an error row
    return root


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def shard_keys(folder: Path, name_part: str) -> set[str]:
    keys: set[str] = set()
    for shard in folder.glob(f"shard-{name_part}*.jsonl"):
        keys |= {json.loads(line)["key"] for line in shard.read_text(encoding="utf-8").splitlines()}
    return keys


def test_same_csv_as_the_plain_command_and_resumes(
    local_cluster: None, folder: Path, tiny_model: Path, tmp_path: Path
) -> None:
    plain, clustered, shards = tmp_path / "plain.csv", tmp_path / "ray.csv", tmp_path / "shards"
    common = ["--model", str(tiny_model), "--device", "cpu", "--quiet"]
    assert main(["predict", str(folder), "--out", str(plain), "--embeddings", str(tmp_path / "p.npz"), *common]) == 1

    # A first run on one study only (as if the whole run had been killed after it) ...
    first = ["predict", str(folder / "a"), "--out", str(tmp_path / "a.csv"), "--engine", "ray"]
    assert main([*first, "--shards", str(shards), *common]) == 0
    done_first = set(read_shards(shards))
    assert len(done_first) == 4 and len(list(shards.glob("shard-*.jsonl"))) >= 1
    before = {p.name for p in shards.glob("shard-*.jsonl")}

    # ... then on the whole folder: only the other study's images are scored.
    whole = ["predict", str(folder), "--out", str(clustered), "--embeddings", str(tmp_path / "r.npz")]
    err = io.StringIO()
    assert main([*whole, "--engine=ray", "--shards", str(shards), *common]) == 1
    new_shards = {p.name for p in shards.glob("shard-*.jsonl")} - before
    scored_second: set[str] = set()
    for name in new_shards:
        scored_second |= shard_keys(shards, name.removeprefix("shard-").removesuffix(".jsonl"))
    assert scored_second and not scored_second & done_first
    assert scored_second | done_first == set(read_shards(shards))
    del err

    want, got = rows(plain), rows(clustered)
    assert list(got[0]) == list(want[0])  # the same columns, in order
    assert len(got) == len(want)
    key = lambda r: (r["level"], r["key"], r["path"])  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)  # the same values, every row
    assert {r["status"] for r in got if r["level"] == "image"} == {"ok", "error"}
    ep, er = read_embeddings(tmp_path / "p.npz"), read_embeddings(tmp_path / "r.npz")
    order = [ep.keys.index(k) for k in er.keys]
    np.testing.assert_array_equal(er.z, ep.z[order])

    # Everything is in the shards now: a third run scores nothing and writes the same CSV.
    again = tmp_path / "again.csv"
    assert main(["predict", str(folder), "--out", str(again), "--engine", "ray", "--shards", str(shards), *common]) == 1
    assert {p.name for p in shards.glob("shard-*.jsonl")} - before == new_shards
    assert again.read_text(encoding="utf-8") == clustered.read_text(encoding="utf-8")


def test_shards_of_another_model_are_refused(tiny_model: Path, folder: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "run.json").write_text(json.dumps({"model_version": "other", "height": 128}), encoding="utf-8")
    argv = ["predict", str(folder), "--out", str(tmp_path / "x.csv"), "--engine", "ray", "--shards", str(shards)]
    assert main([*argv, "--model", str(tiny_model), "--quiet"]) == 2
    assert not (tmp_path / "x.csv").exists()


def test_maps_are_refused_with_ray(tiny_model: Path, folder: Path, tmp_path: Path) -> None:
    argv = ["predict", str(folder), "--out", str(tmp_path / "x.csv"), "--engine", "ray", "--maps", str(tmp_path / "m")]
    assert main([*argv, "--model", str(tiny_model), "--quiet"]) == 2
