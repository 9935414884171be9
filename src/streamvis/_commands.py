"""``streamvis``: the command with subcommands. ``serve`` runs the server (the flags of
``streamvis_server``, which keeps working); ``runs`` lists a data folder's runs; ``export``
writes a run to a file. A bad argument gets one line saying what to give, and exit 2."""

from __future__ import annotations

import argparse
import datetime
import math
import sys
from collections.abc import Sequence
from typing import IO, NoReturn

from . import _cli
from ._errors import ArgumentError, StreamvisError
from ._export import FORMATS, check_out, write_run
from ._readrun import RunData, read_run, run_summaries

__all__ = ["main"]

_DATA_DIR = "streamvis_data"


class _Parser(argparse.ArgumentParser):
    """Its errors in one line (argparse's own print the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamvis", description="Watch, list and export streamvis runs.")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    commands.add_parser("serve", help="run the server (flags: streamvis serve --help)",
                        add_help=False)  # fmt: skip
    runs = commands.add_parser("runs", help="list the runs of a data folder")
    runs.add_argument("--data_dir", default=_DATA_DIR, help="the server's --data_dir")
    export = commands.add_parser(
        "export", help="write a run to OUT, whose suffix picks the format",
        description=f"Write run RUN to OUT; OUT's suffix picks the format: {', '.join(FORMATS)}.",
    )  # fmt: skip
    export.add_argument("--data_dir", default=_DATA_DIR, help="the server's --data_dir")
    export.add_argument("run", metavar="RUN")
    export.add_argument("out", metavar="OUT")
    export.add_argument("--plots", help="only these plots, by name, comma separated")
    export.add_argument("--steps", metavar="A:B", help="only steps A to B (either may be left out)")
    export.add_argument(
        "--max_mb",
        type=_size,
        default=20,
        help=".html: frames kept, in MiB, before steps are thinned (default 20)",
    )
    return parser


def _size(text: str) -> float:
    """A positive, finite number of MiB."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of MiB")
    return value


def _steps(text: str | None) -> tuple[int | None, int | None]:
    """``A:B`` as bounds (an end left out: open); ArgumentError if it is not that."""
    if text is None:
        return None, None
    low, colon, high = text.partition(":")
    try:
        if not colon:
            raise ValueError
        bounds = (int(low) if low.strip() else None, int(high) if high.strip() else None)
    except ValueError:
        raise ArgumentError(
            f"--steps {text!r}: give A:B, whole numbers, like 100:2000 or 500:"
        ) from None
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise ArgumentError(f"--steps {text!r}: A is after B; give the first step first")
    return bounds


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _list(data_dir: str) -> None:
    rows = [("run", "plots", "steps", "first", "last", "size")]
    for run in run_summaries(data_dir):
        if isinstance(run, str):  # a run that cannot be read
            rows.append((run, "?", "unreadable", "-", "-", "-"))
            continue
        steps = f"{run.steps[0]}..{run.steps[1]}" if run.steps else "-"
        first, last = (_when(t) for t in run.times) if run.times else ("-", "-")
        rows.append((run.name, str(run.plots), steps, first, last, f"{run.bytes / 2**20:.1f} MiB"))
    if len(rows) == 1:
        print(f"no runs in {data_dir!r}")
        return
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for line in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _export(args: argparse.Namespace) -> None:
    out = check_out(args.out)
    plots = None
    if args.plots is not None:
        plots = [p.strip() for p in args.plots.split(",") if p.strip()]
        if not plots:
            raise ArgumentError(f"--plots {args.plots!r} names no plot: give names, a,b")

    def progress(plot: str, frames: int) -> None:
        print(f"streamvis export: {args.run}: {plot}: {frames} frames read", file=sys.stderr)

    held = out.suffix.lower() == ".html"  # a page at the first step shows what plots held
    run = read_run(args.data_dir, args.run, plots, _steps(args.steps), progress, held)

    def html(run: RunData, file: IO[bytes]) -> None:
        from ._export_html import write_html  # Bokeh's models: only for .html

        write_html(run, file, int(args.max_mb * 2**20))

    size = write_run(run, out, html)
    print(f"wrote {out} ({size / 2**20:.1f} MiB)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``streamvis``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _cli.main(argv[1:], prog="streamvis serve")
    args = _parser().parse_args(argv)
    try:
        if args.command == "runs":
            _list(args.data_dir)
        else:
            _export(args)
    except StreamvisError as exc:
        print(f"streamvis {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (streamvis runs | head)
        return 0
    except OSError as exc:
        print(f"streamvis {args.command}: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    return 0
