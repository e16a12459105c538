"""The ``rlkit`` command line (placeholder until the learners land)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlkit", description="Deep RL for Atari.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train an agent from a YAML config")
    sub.add_parser("evaluate", help="evaluate a checkpoint under the standard Atari protocol")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
