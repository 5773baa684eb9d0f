"""``wasmprof token create|list|revoke``: API tokens for ``wasmprof serve``."""

from __future__ import annotations

import argparse
import sys

from wasmprof.config import add_store_arguments, parse_scopes, store_config_from_args
from wasmprof.output import write_json

EPILOG = """examples:
  wasmprof token create ci-upload --scopes ingest
  wasmprof token create dashboard --scopes read --data /var/lib/wasmprof
  wasmprof token create ops --scopes admin --db postgresql://wasmprof@db/wasmprof
  wasmprof token list --json
  wasmprof token revoke ci-upload

Use a token with:  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/v1/crash-groups
Scopes: ingest (post modules, logs, samples, profiles), read (everything GET, symbolize),
admin (all, plus resolving crash groups, plugin runtime, webhooks)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("token", help="create, list and revoke API tokens",
                              description="Manage API tokens of the wasmprof service (stored "
                                          "hashed; the token is printed once at creation).",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a token and print it once", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("name", help="a label for the token (who/what uses it)")
    c.add_argument("--scopes", default="ingest,read",
                   help="comma-separated: ingest, read, admin (default ingest,read)")
    c.add_argument("--json", action="store_true", help="print JSON")
    add_store_arguments(c)
    ls = sub.add_parser("list", help="list tokens (never shows the secret)")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_store_arguments(ls)
    rv = sub.add_parser("revoke", help="revoke a token by id, name or prefix")
    rv.add_argument("ident", metavar="ID|NAME|PREFIX")
    add_store_arguments(rv)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wasmprof.store.state import open_store
    from wasmprof.store.tokens import create_token, list_tokens, revoke_token

    store = open_store(store_config_from_args(args))
    try:
        if args.token_command == "create":
            info, plain = create_token(store.db, args.name, parse_scopes(args.scopes, source="--scopes"))
            if args.json:
                write_json({**info.to_dict(), "token": plain})
            else:
                print(plain)
                print(f"token {info.id} '{info.name}' scopes={','.join(sorted(info.scopes))} "
                      "(shown once; store it now)", file=sys.stderr)
            return 0
        if args.token_command == "list":
            tokens = list_tokens(store.db, include_revoked=args.all)
            if args.json:
                write_json({"tokens": [t.to_dict() for t in tokens]})
            else:
                if not tokens:
                    print("no tokens", file=sys.stderr)
                for t in tokens:
                    state = " (revoked)" if t.revoked_at else ""
                    name = "".join(ch if ch.isprintable() else "?" for ch in t.name)
                    print(f"{t.id:5d}  {t.prefix}…  {','.join(sorted(t.scopes)):18s} {name}{state}")
            return 0
        n = revoke_token(store.db, args.ident)
        print(f"revoked {n} token(s)", file=sys.stderr)
        return 0 if n else 1
    finally:
        store.close()
