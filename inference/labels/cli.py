"""``python -m inference labels import | export | stats``: the app's label import and export, headless.

Each takes ``--store FILE`` (default: the app's store, :func:`inference.labels.store.default_store_path`).

- ``import PATH...``: an export folder (its annotations.csv) or a label manifest (as suggestions),
  the same code as the app's File > Import (:func:`inference.labels.exchange.import_any`).
- ``export OUT [--identified]``: the same folder as File > Export
  (:func:`inference.labels.exchange.export_store`): every labelled image where the store last saw it.
- ``stats``: counts by task, source and annotator, and Cohen's kappa between annotators per task with
  the number of images both labelled (:mod:`inference.labels.stats`).

Exit codes as ``python -m inference``: 0 done, 1 some image could not be exported, 2 usage or a
store / file error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from inference.errors import MammoReviewError
from inference.labels.exchange import export_store, import_any
from inference.labels.stats import format_stats, store_stats
from inference.labels.store import LabelStore, default_store_path

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m inference labels", description="Import, export and count labels.")
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    store_help = f"the label store (default: the app's, {default_store_path()})"
    p = sub.add_parser("import", help="import an export folder or a label manifest (as suggestions)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="an export folder, its annotations.csv, or a manifest .csv")
    p.add_argument("--store", metavar="FILE", type=Path, help=store_help)
    p = sub.add_parser("export", help="export every labelled image, as File > Export does")
    p.add_argument("out", metavar="OUT", type=Path, help="a new or empty folder")
    p.add_argument("--identified", action="store_true", help="name the original files instead of de-identified copies")
    p.add_argument("--store", metavar="FILE", type=Path, help=store_help)
    p = sub.add_parser("stats", help="counts by task, source and annotator; agreement between annotators")
    p.add_argument("--store", metavar="FILE", type=Path, help=store_help)
    return parser


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise MammoReviewError("there is no label store here", path)
    return path


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    path: Path = args.store or default_store_path()
    if args.action == "import":
        with LabelStore(path) as store:
            for source in args.paths:
                result, what = import_any(store, source)
                line = f"imported {result.added} {what} from {result.source} ({result.skipped} already there"
                if result.left_out:
                    line += f"; {result.left_out} model guess(es) left out: not labels"
                out.write(line + ")\n")
        return EXIT_OK
    with LabelStore(_existing(path)) as store:
        if args.action == "export":
            done = export_store(store, args.out, identified=args.identified)
            out.write(
                f"exported {done.rows} image(s) and {done.annotations} label(s) to {done.folder}"
                f" (by source: {done.describe_sources()}; {done.left_out} model suggestion(s) left out)\n"
            )
            for problem in done.problems:
                err.write(f"not exported: {problem}\n")
            if done.flagged:
                err.write(
                    f"CHECK {len(done.flagged)} image(s): burned-in text reaches the breast and may remain inside it"
                    f" (listed in {done.folder / 'deidentification.csv'})\n"
                )
            return EXIT_FAILED if done.problems else EXIT_OK
        out.write(f"label store {store.path} (schema {store.schema_version[0]}.{store.schema_version[1]})\n")
        out.write(format_stats(store_stats(store.labels())))
        return EXIT_OK


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run ``labels ARGS``; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[2:] if argv is None else argv))
        return run(args, out, err)
    except MammoReviewError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
