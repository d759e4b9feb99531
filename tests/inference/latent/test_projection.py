"""Projections of latent vectors (PCA, UMAP, t-SNE), their disk cache, and cosine neighbours."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from inference.errors import ProjectionCancelled, ProjectionError
from inference.formats import Embeddings
from inference.latent import projection as proj
from inference.latent.projection import (
    Projection,
    ProjectionParams,
    SimilarityIndex,
    knn_euclidean,
    pca,
    project,
)


def clustered(n: int = 240, clusters: int = 4, dim: int = 496, seed: int = 0) -> tuple[Embeddings, np.ndarray]:
    """Non-negative unit-ish vectors around ``clusters`` centres, like the model's latent vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (clusters, dim)).astype(np.float32)
    labels = np.arange(n) % clusters
    z = centres[labels] + rng.normal(0, 0.08, (n, dim)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return Embeddings(tuple(f"img-{i}" for i in range(n)), z.astype(np.float32), "test-1"), labels


def knn_purity(xy: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    idx, _ = knn_euclidean(xy, k + 1)
    return float(np.mean(labels[idx[:, 1:]] == labels[:, None]))


# --------------------------------------------------------------------------- PCA
def test_pca_matches_sklearn_including_signs() -> None:
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(40, 40)))[0]
    x = ((rng.normal(size=(1500, 40)) * np.linspace(5, 0.5, 40) + 3) @ basis).astype(np.float32)
    ours = pca(x, 5)
    ref = PCA(5, svd_solver="full").fit_transform(x.astype(np.float64))
    assert ours.dtype == np.float32 and ours.shape == (1500, 5)
    np.testing.assert_allclose(ours, ref, atol=2e-3 * np.abs(ref).max())


def test_randomized_pca_of_many_rows_matches_sklearn(monkeypatch) -> None:
    monkeypatch.setattr(proj, "EXACT_PCA_LIMIT", 500)  # the path 100,000 latent vectors take
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.normal(size=(60, 60)))[0]
    scales = np.r_[10.0, 7.0, 5.0, np.full(57, 1.0)]  # a few dominant directions over a bulk, like clustered z
    x = ((rng.normal(size=(3000, 60)) * scales + 1) @ basis).astype(np.float32)
    ref = PCA(3, svd_solver="full").fit_transform(x.astype(np.float64))
    np.testing.assert_allclose(pca(x, 3), ref, atol=2e-3 * np.abs(ref).max())


def test_pca_of_fewer_columns_than_components_pads_with_zeros() -> None:
    x = np.array([[0.0], [1.0], [3.0]], np.float32)
    out = pca(x, 2)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(np.abs(out[:, 0]), np.abs(x[:, 0] - x.mean()), atol=1e-6)
    assert np.all(out[:, 1] == 0)


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_clusters_stay_separated(method: str) -> None:
    emb, labels = clustered(n=240 if method != "pca" else 400)
    result = project(emb, ProjectionParams(method=method, n_neighbors=10, perplexity=20, n_epochs=100, tsne_iter=300))
    assert isinstance(result, Projection)
    assert result.xy.shape == (len(emb.keys), 2) and result.xy.dtype == np.float32
    assert np.all(np.isfinite(result.xy))
    assert result.keys == emb.keys and result.model_version == "test-1" and not result.from_cache
    assert knn_purity(result.xy, labels) > 0.95
    assert silhouette_score(result.xy, labels) > 0.5


def test_umap_with_a_seed_is_reproducible_and_reports_progress() -> None:
    emb, _ = clustered(n=150)
    seen: list[tuple[int, int]] = []
    params = ProjectionParams(method="umap", n_neighbors=8, n_epochs=60, seed=3, reproducible=True)
    a = project(emb, params, progress=lambda d, t: seen.append((d, t)))
    b = project(emb, params)
    np.testing.assert_array_equal(a.xy, b.xy)
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == seen[-1][1] and len(set(done)) >= 4


def test_umap_cancelled_during_the_epochs() -> None:
    emb, _ = clustered(n=150)
    seen: list[int] = []
    with pytest.raises(ProjectionCancelled):
        project(
            emb,
            ProjectionParams(method="umap", n_neighbors=8, n_epochs=60),
            progress=lambda d, t: seen.append(d),
            cancelled=lambda: bool(seen) and seen[-1] >= 350,  # 35 %: the epochs start
        )
    assert max(seen) < 1000
    # the cancel left nothing held: the next UMAP in this process runs to its end (it used to wait forever
    # on the progress bar's lock, which the cancel raised through)
    params = ProjectionParams(method="umap", n_neighbors=8, n_epochs=60)
    done = threading.Thread(target=project, args=(emb, params), daemon=True)
    done.start()
    done.join(120)
    assert not done.is_alive(), "a UMAP after a cancelled one never finished"


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_cancelled_before_start_computes_nothing(method: str, tmp_path) -> None:
    emb, _ = clustered(n=60)
    with pytest.raises(ProjectionCancelled):
        project(emb, ProjectionParams(method=method), cache_dir=tmp_path, cancelled=lambda: True)
    assert not list(tmp_path.iterdir())


def test_small_sets_clamp_neighbours_and_perplexity() -> None:
    emb, _ = clustered(n=12, clusters=2)
    u = project(emb, ProjectionParams(method="umap", n_neighbors=50, n_epochs=30))
    t = project(emb, ProjectionParams(method="tsne", perplexity=30, tsne_iter=250))
    assert u.params.n_neighbors == 11 and u.xy.shape == (12, 2)
    assert t.params.perplexity == pytest.approx(11 / 3) and t.xy.shape == (12, 2)


def test_too_few_images_and_bad_parameters_are_clear_errors() -> None:
    emb, _ = clustered(n=4, clusters=2)
    with pytest.raises(ProjectionError, match="at least 5 images"):
        project(emb, ProjectionParams(method="umap"))
    assert project(emb, ProjectionParams(method="pca")).xy.shape == (4, 2)
    with pytest.raises(ProjectionError, match="unknown projection method"):
        ProjectionParams(method="mds")
    with pytest.raises(ProjectionError, match="min_dist"):
        ProjectionParams(method="umap", min_dist=2.0)
    z = emb.z.copy()
    z[1, 3] = np.nan
    with pytest.raises(ProjectionError, match="1 of 4 latent vectors"):
        project(Embeddings(emb.keys, z), ProjectionParams())


# --------------------------------------------------------------------------- cache
def test_cache_hit_returns_the_same_result_without_recomputing(tmp_path, monkeypatch) -> None:
    emb, _ = clustered(n=80)
    params = ProjectionParams(method="umap", n_neighbors=6, n_epochs=30)
    first = project(emb, params, cache_dir=tmp_path)
    assert not first.from_cache and len(list(tmp_path.glob("umap-*.npz"))) == 1

    def boom(*args: object) -> None:
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(proj, "_umap", boom)
    second = project(emb, params, cache_dir=tmp_path)
    assert second.from_cache and second.seconds == 0.0
    np.testing.assert_array_equal(second.xy, first.xy)
    assert second.params == first.params and second.keys == first.keys

    # other parameters, another image set or another model version: a miss
    for other_emb, other_params in (
        (emb, ProjectionParams(method="umap", n_neighbors=7, n_epochs=30)),
        (Embeddings(emb.keys[:-1], emb.z[:-1], emb.model_version), params),
        (Embeddings(emb.keys, emb.z, "test-2"), params),
    ):
        with pytest.raises(AssertionError, match="recomputed"):
            project(other_emb, other_params, cache_dir=tmp_path)


def test_parameters_of_other_methods_do_not_split_the_cache(tmp_path) -> None:
    emb, _ = clustered(n=50)
    project(emb, ProjectionParams(method="pca"), cache_dir=tmp_path)
    again = project(emb, ProjectionParams(method="pca", perplexity=5, n_neighbors=4), cache_dir=tmp_path)
    assert again.from_cache


def test_corrupt_cache_is_recomputed_and_replaced(tmp_path, caplog) -> None:
    emb, _ = clustered(n=50)
    first = project(emb, ProjectionParams(), cache_dir=tmp_path)
    (path,) = tmp_path.glob("pca-*.npz")
    path.write_bytes(b"not a zip file")
    again = project(emb, ProjectionParams(), cache_dir=tmp_path)
    assert not again.from_cache and "unreadable projection cache" in caplog.text
    np.testing.assert_allclose(again.xy, first.xy)
    assert project(emb, ProjectionParams(), cache_dir=tmp_path).from_cache


def test_unwritable_cache_only_costs_time(tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    emb, _ = clustered(n=30)
    result = project(emb, ProjectionParams(), cache_dir=blocker / "sub")
    assert result.xy.shape == (30, 2) and "cannot write projection cache" in caplog.text


# --------------------------------------------------------------------------- neighbours
def test_cosine_neighbours_on_hand_made_vectors() -> None:
    keys = ("q", "same-direction", "close", "orthogonal", "opposite", "zero")
    z = np.array(
        [[1, 0, 0], [5, 0, 0], [1, 0.2, 0], [0, 1, 0], [-1, 0, 0], [0, 0, 0]],
        np.float32,
    )
    index = SimilarityIndex(keys, z)
    found = index.neighbours("q", k=4)
    assert [n.key for n in found] == ["same-direction", "close", "orthogonal", "zero"]
    assert found[0].distance == pytest.approx(0.0, abs=1e-6)
    assert found[1].distance == pytest.approx(1 - 1 / np.sqrt(1.04), abs=1e-6)
    assert found[2].distance == pytest.approx(1.0) and found[2].index == 3
    everything = index.neighbours("q", k=100)
    assert len(everything) == 5 and "q" not in [n.key for n in everything]
    assert everything[-1].key == "opposite" and everything[-1].distance == pytest.approx(2.0)
    assert [n.key for n in index.neighbours_of(np.array([0, 3, 0]), k=1)] == ["orthogonal"]
    with pytest.raises(KeyError):
        index.neighbours("missing")


def test_neighbours_agree_with_brute_force() -> None:
    emb, _ = clustered(n=300, clusters=6, seed=4)
    index = SimilarityIndex.from_embeddings(emb)
    u = emb.z / np.linalg.norm(emb.z, axis=1, keepdims=True)
    for row in (0, 17, 299):
        cos = u @ u[row]
        cos[row] = -np.inf
        expected = np.argsort(-cos, kind="stable")[:7]
        got = index.neighbours(emb.keys[row], k=7)
        assert [n.index for n in got] == list(expected)
        np.testing.assert_allclose([n.distance for n in got], 1 - cos[expected], atol=1e-5)


def test_exact_knn_puts_each_point_first() -> None:
    x = np.array([[0, 0], [1, 0], [3, 0], [3, 1]], np.float32)
    idx, dist = knn_euclidean(x, 2, block=3)
    assert idx.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]
    np.testing.assert_allclose(dist[:, 1], [1, 1, 1, 1])


# --------------------------------------------------------------------------- imports
def test_umap_is_imported_lazily() -> None:
    code = textwrap.dedent(
        """
        import sys
        import inference.latent.projection
        heavy = [m for m in ("umap", "numba", "pynndescent", "sklearn.manifold") if m in sys.modules]
        print(",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
