"""``wasmprof demo``: the README's main command — ``serve --demo`` on 127.0.0.1:8080."""

from __future__ import annotations

import argparse

from wasmprof.commands.serve import add_serve_arguments, build_config, serve

EPILOG = """examples:
  wasmprof demo                      # http://127.0.0.1:8080 with the bundled samples
  wasmprof demo --port 9090
  wasmprof demo --data ./demo-state  # keep the demo's state between runs

Then open http://127.0.0.1:8080/ or follow the curl lines it prints."""


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="start the service with bundled sample data (try this first)",
                              description="Start `wasmprof serve --demo`: a fresh SQLite store "
                                          "loaded with the bundled sample modules, crash logs "
                                          "and profiles, anonymous access, dashboard at /.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_serve_arguments(p, demo_default=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = build_config(args, demo=True)
    return serve(config, banner=True, log_format=args.log_format, quiet=args.quiet,
                 workers=args.workers)
