"""``hytnas costs``: the exact cost model on sampled archs of a space or on zoo models.

    hytnas costs                                # 10 archs of the hytnas space at 224 px
    hytnas costs --space hytnas-tiny -n 5 --seed 1
    hytnas costs --zoo mobilevit_xxs mobilenet_v1_025

Zoo models are costed in their published setting (input size, classes) unless ``--input-size`` /
``--num-classes`` are given; space samples at the space's input size and 10 classes.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from hytnas.errors import ConfigError

COLUMNS = ("params_k", "macs_m", "peak_sram_kb", "model_size_kb")
SPACE_NUM_CLASSES = 10


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "costs", help="params, MACs, peak SRAM and model size of sampled archs or zoo models",
        description="Exact analytic costs (params_k, macs_m, int8 peak_sram_kb, int8 model_size_kb) of "
                    "archs sampled from a space, or of zoo models.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--space", default="hytnas", metavar="NAME|YAML",
                     help="built-in space name or space YAML file (default: hytnas)")
    src.add_argument("--zoo", nargs="+", metavar="NAME", help="zoo models instead of space samples ('all' for every one)")
    p.add_argument("-n", type=int, default=10, help="number of archs to sample (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="input resolution (default: the space's, or each zoo model's published one)")
    p.add_argument("--num-classes", type=int, default=None, metavar="K",
                   help=f"classifier classes (default: {SPACE_NUM_CLASSES} for space samples, the published "
                        "number for zoo models)")
    p.set_defaults(func=run)


def _positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag}: must be >= 1, got {value}")


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The table rows: ``name``, ``input_size``, ``num_classes`` and the :data:`COLUMNS`."""
    from hytnas.costs import arch_costs
    from hytnas.models import zoo

    _positive("-n", args.n)
    _positive("--input-size", args.input_size)
    _positive("--num-classes", args.num_classes)
    if args.seed < 0:
        raise ConfigError(f"--seed: must be >= 0, got {args.seed}")
    if args.zoo:
        names = zoo.names() if args.zoo == ["all"] else args.zoo
        items = []
        for name in names:
            arch = zoo.get(name)
            meta = dict(arch.meta)
            items.append((name, arch, args.input_size or meta["input_size"], args.num_classes or meta["num_classes"]))
    else:
        from hytnas.space import get_space

        space = get_space(args.space, input_size=args.input_size)
        k = args.num_classes or SPACE_NUM_CLASSES
        items = [(space.arch_id(a), space.to_arch_cfg(a), space.input_size, k)
                 for a in space.sample(args.n, seed=args.seed)]
    out = []
    for name, arch, size, k in items:
        costs = arch_costs(arch, size, k)
        out.append({"name": name, "input_size": size, "num_classes": k, **{c: costs[c] for c in COLUMNS}})
    return out


def format_table(table: list[dict[str, Any]]) -> str:
    header = ("name", "input", "classes") + COLUMNS
    lines = [[r["name"], str(r["input_size"]), str(r["num_classes"])] + [f"{r[c]:.1f}" for c in COLUMNS] for r in table]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:  # name left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([fmt(header)] + [fmt(line) for line in lines])


def run(args: argparse.Namespace) -> int:
    print(format_table(rows(args)))
    return 0
