"""The ONNX Runtime session of the bundled (or a given) model, checked against its manifest at load.

``ModelSession.load()`` opens one session and keeps it: CUDA when onnxruntime-gpu is installed and
CUDA works (``device="auto"`` falls back to the CPU with a notice saying why, ``device="cuda"``
raises instead, naming the missing CUDA / cuDNN libraries, driver or package; see
:mod:`inference.model.providers`), else the CPU with one intra-op thread per physical core and
every graph optimisation on. A model that is
missing, is not ONNX, or does not match its manifest raises one :class:`ModelError` naming the file
and the mismatch; every run checks its outputs' shapes and class counts against the manifest too
(:func:`check_outputs`), since a graph may declare symbolic shapes.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ModelError
from inference.formats import ModelManifest, file_sha256, manifest_path_for, read_model_manifest, scoring_path_for
from inference.model.calibration import calibrate_outputs, check_calibration
from inference.model.providers import CPU_PROVIDER, CUDA_PROVIDER, NO_RUNTIME, cuda_problem, preload_cuda_libraries

__all__ = [
    "DEVICES", "ModelSession", "bundled_model_path", "check_against_manifest", "check_outputs", "cuda_available",
    "physical_cores",
]

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
_CUDA = CUDA_PROVIDER
_CPU = CPU_PROVIDER


def bundled_model_path() -> Path:
    """The model shipped in the ``resources`` package (``resources/models/mammo-mtl.onnx``)."""
    return Path(str(importlib.resources.files("resources") / "models" / "mammo-mtl.onnx"))


def physical_cores() -> int:
    """Physical CPU cores this process may use (logical CPUs when the topology is unknown)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        phys = core = ""
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "physical id":
                    phys = value.strip()
                elif name == "core id":
                    core = value.strip()
                elif not line.strip():
                    if core:
                        cores.add((phys, core))
                    phys = core = ""
            if core:
                cores.add((phys, core))
    except OSError:
        pass
    n = len(cores) if cores else usable
    return max(1, min(n, usable))


def _onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError(NO_RUNTIME) from exc
    return ort


def cuda_available() -> bool:
    """True when the installed onnxruntime offers the CUDA execution provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return _CUDA in ort.get_available_providers()


def _dims(shape: Sequence[Any]) -> list[int | None]:
    """ONNX Runtime shape -> ints for fixed dimensions, None for symbolic ones."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def _fmt(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _check_digest(path: Path, expected: str, manifest_path: Path) -> None:
    """Raise :class:`ModelError` when ``path``'s SHA-256 is not the manifest's (none given: not checked)."""
    if not expected:
        return
    digest = file_sha256(path)
    if digest != expected.lower():
        raise ModelError(
            f"the file's SHA-256 {digest[:12]}... does not match the manifest's {expected[:12]}... "
            f"(the model and {manifest_path.name} do not belong together)",
            path,
        )


def _open_scoring(ort: Any, path: Path, manifest: ModelManifest, options: Any, providers: list[Any]) -> Any:
    """The session of the model's scoring graph (:func:`~inference.formats.scoring_path_for`), checked
    like the model: its SHA-256 and its outputs against the manifest. None when the manifest names none
    or the file is not beside the model (a model copied without it runs whole: slower, the same numbers)."""
    where = scoring_path_for(path)
    if not manifest.scoring or not where.is_file():
        return None
    _check_digest(where, str(manifest.scoring["sha256"]), manifest_path_for(path))
    try:
        session = ort.InferenceSession(str(where), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the scoring graph cannot be loaded ({text[:300]})", where) from exc
    wanted = list(manifest.scoring["outputs"])
    got = [o.name for o in session.get_outputs()]
    if got != wanted:
        raise ModelError(f"the scoring graph's outputs are {got}, the manifest says {wanted}", where)
    check_against_manifest(session, replace(manifest, outputs={k: manifest.outputs[k] for k in wanted}), where)
    return session


def check_against_manifest(session: Any, manifest: ModelManifest, path: Path) -> None:
    """Raise :class:`ModelError` (naming ``path``) when the session's graph contradicts ``manifest``."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        expects = f"the manifest expects one named {manifest.input_name!r}"
        raise ModelError(f"the model has {len(inputs)} inputs ({names}); {expects}", path)
    inp = inputs[0]
    if inp.name != manifest.input_name:
        raise ModelError(f"the model's input is named {inp.name!r}, the manifest says {manifest.input_name!r}", path)
    shape = _dims(inp.shape)
    if len(shape) != 4:
        raise ModelError(f"the model's input has rank {len(shape)} {_fmt(shape)}; expected [N, 1, H, W]", path)
    if shape[1] not in (None, 1):
        raise ModelError(f"the model's input has {shape[1]} channels; expected 1", path)
    if shape[2] is not None and shape[2] != manifest.input_height:
        raise ModelError(f"the model's input height is {shape[2]}, the manifest says {manifest.input_height}", path)
    if "float" not in inp.type:
        raise ModelError(f"the model's input is {inp.type}; expected float32", path)

    outputs = {o.name: _dims(o.shape) for o in session.get_outputs()}
    for name, expected in manifest.outputs.items():
        if name not in outputs:
            have = ", ".join(sorted(outputs))
            raise ModelError(f"output {name!r} listed in the manifest is not in the model (it has: {have})", path)
        got = outputs[name]
        if len(got) != len(expected):
            raise ModelError(
                f"output {name!r} has rank {len(got)} {_fmt(got)}, the manifest says {_fmt(expected)}", path
            )
        for g, e in zip(got, expected, strict=True):
            if g is not None and e is not None and g != e:
                raise ModelError(f"output {name!r} has shape {_fmt(got)}, the manifest says {_fmt(expected)}", path)
    for task, classes in manifest.tasks.items():
        n = outputs[task][-1] if task in outputs else None
        if n is not None and n != len(classes):
            raise ModelError(f"output {task!r} has {n} classes, the manifest names {len(classes)}", path)
    if "z" in manifest.outputs:
        dim = outputs["z"][-1]
        if dim is not None and dim != manifest.latent_dim:
            raise ModelError(f"the latent z has {dim} dimensions, the manifest says {manifest.latent_dim}", path)


@dataclass(frozen=True, eq=False)
class ModelSession:
    """One loaded model: its manifest, the device it runs on, and :meth:`run`."""

    path: Path
    manifest: ModelManifest
    device: str  # the device actually used: "cpu" | "cuda"
    threads: int
    notice: str  # why "auto" ended on the CPU when CUDA was offered but failed; "" otherwise
    _session: Any
    _scoring: Any = None  # the scoring graph's session; None when the model has none beside it

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def height(self) -> int:
        return self.manifest.input_height

    @property
    def default_batch_size(self) -> int:
        """Images per run that is fastest here: 1 on the CPU (measured: larger batches are slower per
        image at 2048 and barely faster at 512), 8 on CUDA."""
        return 8 if self.device == "cuda" else 1

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.manifest.outputs)

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto", threads: int | None = None) -> ModelSession:
        """Open ``model`` (default: the bundled one) on ``device`` ("auto", "cpu" or "cuda")."""
        ort = _onnxruntime()
        if device not in DEVICES:
            raise ModelError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
        path = Path(model) if model is not None else bundled_model_path()
        if path.suffix.lower() == ".json":
            path = path.with_suffix(".onnx")
        if not path.is_file():
            raise ModelError("model file not found", path)
        manifest = read_model_manifest(manifest_path_for(path))
        check_calibration(manifest, manifest_path_for(path))
        _check_digest(path, manifest.onnx_sha256, manifest_path_for(path))

        available = ort.get_available_providers()
        want_cuda = device == "cuda" or (device == "auto" and _CUDA in available)
        if device == "cuda" and _CUDA not in available:
            problem = cuda_problem()
            raise ModelError(f"device 'cuda' was asked for but CUDA cannot run: {problem}; or use --device cpu", path)
        if want_cuda:
            preload_cuda_libraries()
        n_threads = int(threads) if threads else physical_cores()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: no provider chatter on the user's terminal
        # No busy-waiting between operators: the model shares the cores with the decode workers, and
        # spinning threads take them from the workers (2 cores: the CLI 15.5 -> 19 images/s, the app's 70
        # images 4.0 -> 3.4 s), at ~2 ms more per forward on an idle machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        # Widths vary per image: cuDNN's exhaustive search would re-tune for every new width.
        cuda = (_CUDA, {"cudnn_conv_algo_search": "HEURISTIC"})
        providers: list[Any] = [cuda, _CPU] if want_cuda else [_CPU]
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"not a valid ONNX model or it cannot be loaded ({text[:300]})", path) from exc

        notice = ""
        used_cuda = _CUDA in session.get_providers()
        if want_cuda and not used_cuda:
            why = cuda_problem() or "onnxruntime did not say why (its log above names the failing library)"
            if device == "cuda":
                raise ModelError(f"device 'cuda' was asked for but CUDA could not be initialised: {why}", path)
            notice = f"CUDA is offered by onnxruntime but could not be initialised ({why}); running on the CPU"
        check_against_manifest(session, manifest, path)
        return cls(
            path=path,
            manifest=manifest,
            device="cuda" if used_cuda else "cpu",
            threads=n_threads,
            notice=notice,
            _session=session,
            _scoring=_open_scoring(ort, path, manifest, options, providers),
        )

    def uses_scoring_graph(self, outputs: Collection[str] | None) -> bool:
        """True when :meth:`run` with these ``outputs`` runs the scoring graph (the network without its
        decoder and maps) rather than the whole model."""
        if self._scoring is None or outputs is None:
            return False
        return set(outputs) & set(self.output_names) <= set(self.manifest.scoring["outputs"])

    def run(
        self, batch: np.ndarray, calibrated: bool = True, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run a batch ``[N, 1, H, W]`` float32 in [0, 1]; returns every manifest output by name, or
        only those in ``outputs``. ONNX Runtime runs a whole graph whichever outputs are asked for:
        when they are all in the model's scoring graph (the tasks and ``z``), that graph runs instead
        of the whole model (:meth:`uses_scoring_graph`; 768 high on one thread, 7.9 instead of 14.4 ms
        an image), with the same numbers.

        Class probabilities are temperature-scaled as the manifest's ``calibration`` says
        (:mod:`inference.model.calibration`); ``calibrated=False`` gives the graph's own outputs
        (what a calibration is fitted on)."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != self.height:
            raise ModelError(
                f"batch of shape {x.shape} does not fit the model's input [N, 1, {self.height}, W]", self.path
            )
        if x.shape[3] % self.manifest.width_multiple:
            raise ModelError(f"batch width {x.shape[3]} is not a multiple of {self.manifest.width_multiple}", self.path)
        names = [n for n in self.output_names if outputs is None or n in outputs]
        graph = self._scoring if self.uses_scoring_graph(outputs) else self._session
        values = graph.run(names, {self.manifest.input_name: x})
        out = {n: np.asarray(v) for n, v in zip(names, values, strict=True)}
        check_outputs(out, self.manifest, x.shape[0], self.path)
        return calibrate_outputs(self.manifest, out) if calibrated else out


def check_outputs(out: dict[str, np.ndarray], manifest: ModelManifest, batch: int, path: Path) -> None:
    """Raise one :class:`ModelError` naming the output, the expected and the actual shape when a run's
    output contradicts the manifest (rank, a fixed dimension, the batch size, a task's class count,
    the latent size): a graph whose declared shapes are symbolic is checked here, on every run (the
    outputs that were asked for)."""
    for name, expected in manifest.outputs.items():
        if name not in out:
            continue
        value = out[name]
        want: list[int | None] = list(expected)
        if want:
            want[0] = batch
        if name in manifest.tasks:
            want[-1] = len(manifest.tasks[name])
        elif name == "z":
            want[-1] = manifest.latent_dim
        got = value.shape
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want, strict=False)):
            what = f"{len(manifest.tasks[name])} classes, " if name in manifest.tasks else ""
            raise ModelError(
                f"output {name!r} of the model has shape {_fmt(list(got))}; expected {what}{_fmt(want)} "
                f"(the manifest says {_fmt(expected)})",
                path,
            )
