"""``wasmprof`` command line: one sub-command per module in :mod:`wasmprof.commands`.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func=run`` (``run(args) -> int`` exit code). Exit codes: 0 success, 1 "nothing found"
(where a command documents it), 2 bad usage or bad input (a :class:`WasmprofError`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from wasmprof import __version__, commands
from wasmprof.errors import WasmprofError


def _command_for(argv: list[str] | None) -> str | None:
    """The sub-command named on the command line (the first non-option word), if any."""
    for word in sys.argv[1:] if argv is None else argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Command module ``wasmprof.commands.X`` defines command ``X``; when ``argv``
    names a command only that module is imported (every command's imports are paid only for
    ``wasmprof --help`` or an unknown command)."""
    parser = argparse.ArgumentParser(
        prog="wasmprof",
        description="Symbolize WebAssembly plugin crashes and profiles from Envoy/Istio/Higress "
                    "gateways (WAMR interpreter and AOT, V8, Wasmtime).",
        epilog="Run 'wasmprof COMMAND --help' for a command's options and examples.")
    parser.add_argument("--version", action="version", version=f"wasmprof {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (repeat for debug logs) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__))
    wanted = _command_for(argv)
    if wanted in names:
        names = [wanted]
    for name in names:
        mod = importlib.import_module(f"wasmprof.commands.{name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except WasmprofError as e:
        print(f"wasmprof: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("wasmprof: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error for a filter.
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
