"""``python -m wallets.sandbox --port N [--host H] [--db PATH] [--seed N] [--faults JSON]``."""
from __future__ import annotations

import argparse
import os
import sys

from .faults import FaultError, validate
from .server import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wallets.sandbox",
                                     description="Plays the five e-wallet providers over HTTP (development and tests only).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=os.environ.get("SANDBOX_PORT") or "8765",
                        help="port (default $SANDBOX_PORT or 8765; 0 picks a free one)")
    parser.add_argument("--db", default=":memory:", help="SQLite file for the books (default in memory)")
    parser.add_argument("--seed", type=int, default=os.environ.get("SANDBOX_SEED") or None,
                        help="seed of the fault dice (default $SANDBOX_SEED, else unseeded)")
    parser.add_argument("--faults", default=None,
                        help='faults per provider as JSON, e.g. \'{"XENIT": {"pending_rate": 0.3}}\' '
                             "(applied over $SANDBOX_FAULTS)")
    args = parser.parse_args(argv)
    env_faults = os.environ.get("SANDBOX_FAULTS") or None
    try:
        for name, source in (("SANDBOX_FAULTS", env_faults), ("--faults", args.faults)):
            if source:
                validate(source)
    except FaultError as exc:
        parser.error(f"{name}: {exc}")
    return run(host=args.host, port=args.port, db=args.db, seed=args.seed, faults=args.faults, env_faults=env_faults)


if __name__ == "__main__":
    sys.exit(main())
