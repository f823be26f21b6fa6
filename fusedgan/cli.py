"""The ``fusedgan`` command (also ``python -m fusedgan``).

    fusedgan demo   train a small GAN end to end with fusedgan losses (figure + JSON summary)
    fusedgan bench  benchmark every loss against torch, torch.compile and the autograd floor
                    (--e2e: whole training steps of GAN recipes)
    fusedgan info   print versions, the extension's build and the backend each device gets

``main(argv)`` returns the exit status, so tests can call it in-process.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="fusedgan", description="fused, numerically stable GAN losses: demo, benchmark, info"
    )
    parser.add_argument("--version", action="version", version=f"fusedgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,info}")
    sub.required = True

    from . import bench, demo

    p = sub.add_parser("demo", help="train a small GAN with fusedgan losses",
                       description=(demo.__doc__ or "").split("\n\n")[0])
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)

    p = sub.add_parser("bench", help="benchmark the losses against torch / torch.compile / the autograd floor",
                       description=(bench.__doc__ or "").split("\n\n")[0])
    bench.add_arguments(p)
    p.set_defaults(func=bench.main)

    p = sub.add_parser("info", help="versions, build and backends")
    p.set_defaults(func=lambda args: __import__("fusedgan").info())
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (argparse errors exit with status 2)."""
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # our own clear errors: message then status 2
        if isinstance(exc.code, str):
            print(f"error: {exc.code}", file=sys.stderr)
            return 2
        raise
    return rc if isinstance(rc, int) else 0
