"""``hytnas`` command line. Each sub-command lives in its own module ``hytnas.cli.<name>`` with a
``register(subparsers)`` function; heavy imports (ray, mlflow, botorch) happen inside handlers.

Every :class:`~hytnas.errors.HytnasError` becomes one line ``hytnas: error: ...`` and exit code 2
(argparse's own usage errors exit 2 as well).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from hytnas.errors import HytnasError

#: sub-command modules, in the order they appear in ``hytnas --help``
SUBCOMMANDS = ("search", "status", "results", "costs", "profile", "predictor", "benchmark", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hytnas", description="Hardware-aware multi-objective NAS of tiny hybrid CNN + ViT models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"hytnas.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            # linear_operator's (botorch's) import-time notice about torch.jit: not actionable for a CLI user
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            return int(args.func(args) or 0)
    except HytnasError as exc:
        print(f"hytnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hytnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
