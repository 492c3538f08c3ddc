"""``herd scaling sweep|fit|predict``: Llama 3's scaling-law method (§3.2.1) and the Chinchilla fit.

``sweep`` trains an IsoFLOP grid into a runs CSV (:mod:`herd.scaling.sweep`),
``fit`` fits Chinchilla's L(N, D) and the IsoFLOP power law to it
(:mod:`herd.scaling.chinchilla`, :mod:`herd.scaling.isoflop`), and ``predict``
maps compute to a benchmark's accuracy in Llama 3's two steps
(:mod:`herd.scaling.predict`). Each action's parser lives in its own module
(``herd.cli.scaling_<action>``); this one puts them under one command.
"""

from __future__ import annotations

import argparse

from herd.cli import scaling_fit, scaling_predict, scaling_sweep


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd scaling`` with its ``sweep``, ``fit`` and ``predict`` actions."""
    scaling = sub.add_parser(
        "scaling",
        help="scaling laws: IsoFLOP sweeps, Chinchilla and Llama 3 fits, downstream prediction",
        description="Run Llama 3's scaling-law method at small scale and apply its fits at any scale: "
        "sweep (train an IsoFLOP grid into RUNS.csv), fit (Chinchilla's L(N, D) and the IsoFLOP power "
        "law), predict (a benchmark's accuracy at a compute budget). See docs/scaling.md.",
    )
    actions = scaling.add_subparsers(dest="scaling_command", metavar="ACTION")
    for module in (scaling_sweep, scaling_fit, scaling_predict):
        module.add_parser(actions)
    scaling.set_defaults(func=lambda args: scaling.print_help() or 2)
