"""``wasmprof`` command line: one sub-command per module in :mod:`wasmprof.commands`.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func=run`` (``run(args) -> int`` exit code). Exit codes: 0 success, 1 "nothing found"
(where a command documents it), 2 bad usage or bad input (a :class:`WasmprofError`).

Start-up is kept small: a command line naming a command imports only that command's
module; ``wasmprof --help`` and ``--version`` import none (the one-line summaries below are
checked against the modules' own parsers in ``tests/test_cli_startup.py``; a command module
missing from the table is still found, by importing it).
"""

from __future__ import annotations

import argparse
import sys

from wasmprof import __version__

DESCRIPTION = ("Symbolize WebAssembly plugin crashes and profiles from Envoy/Istio/Higress "
               "gateways (WAMR interpreter and AOT, V8, Wasmtime).")
EPILOG = "Run 'wasmprof COMMAND --help' for a command's options and examples."

# command -> the help line its module registers (kept in step by the start-up test; an
# entry whose module is not installed is never shown)
SUMMARIES = {
    "addr2line": "resolve addresses to function, file:line:column and inline chains",
    "demo": "start the service with bundled sample data (try this first)",
    "diff": "compare two profiles: per-function table and differential flame graph",
    "flamegraph": "symbolized flame graph from perf/agent/folded/WAMR profiles",
    "health": "read Envoy Wasm stats and WAMR memory dumps (per-plugin memory and VM health)",
    "inspect": "show what a Wasm/AOT/object/cwasm file is and its function table",
    "serve": "run the HTTP service (API, dashboard, metrics)",
    "symbolize": "find Wasm crashes in gateway logs and symbolize their backtraces",
    "token": "create, list and revoke API tokens",
    "webhook": "configure alert webhooks and inspect their deliveries",
}


def command_names() -> list[str]:
    """The command modules in :mod:`wasmprof.commands` (no import of any of them)."""
    import pkgutil

    from wasmprof import commands
    return sorted(info.name for info in pkgutil.iter_modules(commands.__path__)
                  if not info.name.startswith("_"))


def _command_for(argv: list[str] | None) -> str | None:
    """The sub-command named on the command line (the first non-option word), if any."""
    for word in sys.argv[1:] if argv is None else argv:
        if not word.startswith("-"):
            return word
    return None


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="wasmprof", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"wasmprof {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (repeat for debug logs) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Command module ``wasmprof.commands.X`` defines command ``X``; when ``argv``
    names a command only that module is imported; otherwise the commands are listed from
    :data:`SUMMARIES` without importing them (only modules missing there are imported)."""
    import importlib

    parser, sub = _top_parser()
    names = command_names()
    wanted = _command_for(argv)
    if wanted in names:
        importlib.import_module(f"wasmprof.commands.{wanted}").register(sub)
        return parser
    for name in names:
        if name in SUMMARIES:
            sub.add_parser(name, help=SUMMARIES[name], add_help=False)
        else:
            register = getattr(importlib.import_module(f"wasmprof.commands.{name}"),
                               "register", None)
            if register is not None:
                register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in and args_in[0] == "--version":
        print(f"wasmprof {__version__}")
        return 0
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from wasmprof.errors import WasmprofError
    if args.verbose or "logging" in sys.modules:      # else Python's own last-resort
        import logging                                # handler prints warnings
        logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
