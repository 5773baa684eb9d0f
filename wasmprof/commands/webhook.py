"""``wasmprof webhook add|list|remove|test|deliveries|redeliver``: alert webhooks.

Acts on the same store as ``wasmprof serve`` (``--data DIR`` / ``--db URL``). Deliveries
are sent by the server's delivery worker; ``test`` sends one delivery itself, at once.
Exit codes: 0 ok; 1 ``test`` was not accepted by the receiver, or nothing matched
(unknown id); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from wasmprof.alerts import hooks, outbox, webhooks
from wasmprof.alerts.events import SUBSCRIBABLE, parse_event_list
from wasmprof.alerts.payloads import clean
from wasmprof.alerts.retry import RetryPolicy
from wasmprof.alerts.webhooks import WebhookSpec
from wasmprof.config import add_store_arguments, store_config_from_args
from wasmprof.errors import UsageError
from wasmprof.output import write_json

EPILOG = """\
examples:
  wasmprof webhook add https://hooks.example.com/wasmprof --events crash.new_group,crash.regressed
  wasmprof webhook add https://hooks.slack.com/services/T/B/X --format slack \\
      --events crash.spike --spike 100/300 --plugin key-auth
  wasmprof webhook add http://127.0.0.1:9000/ --events profile.regression \\
      --regression-points 10 --baseline version=1.2
  wasmprof webhook list
  wasmprof webhook test 1                      send a test delivery now and show the answer
  wasmprof webhook deliveries --status dead    the dead-letter queue
  wasmprof webhook redeliver dlv_0123abcd…     queue a dead delivery again
  wasmprof webhook remove 1

events: """ + ", ".join(str(e) for e in SUBSCRIBABLE) + """ ("crash.*" = all crash events, "plugin.*" = plugin health events).
The signing secret is printed once by `add`; receivers verify X-Wasmprof-Signature
(see docs/webhooks.md). All commands take --data DIR / --db URL like `wasmprof serve`.
"""


def _rate(text: str, name: str) -> tuple[int, float]:
    """``N/SECONDS`` → (N, seconds)."""
    try:
        n, _, secs = text.partition("/")
        count, window = int(n), float(secs or 60)
    except ValueError:
        raise UsageError(f"--{name} must look like N/SECONDS", source=f"--{name}",
                         expected="e.g. 20/60", found=text) from None
    if count < 1 or not (window > 0):
        raise UsageError(f"--{name} needs N >= 1 and SECONDS > 0", source=f"--{name}",
                         found=text)
    return count, window


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "webhook", help="configure alert webhooks and inspect their deliveries",
        description="Alert webhooks: signed HTTP POSTs when a plugin starts crashing, a "
                    "resolved crash returns, a crash group spikes, or a function's CPU share "
                    "jumps. Deliveries are retried with backoff and kept in the database "
                    "until delivered (or dead-lettered).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    add_store_arguments(common)

    a = sub.add_parser("add", parents=[common], help="add a webhook",
                       description="Add a webhook; prints its id and signing secret.")
    a.add_argument("url", metavar="URL", help="http(s) URL to POST alerts to")
    a.add_argument("--events", required=True, metavar="EV[,EV…]",
                   help="comma-separated: " + ", ".join(str(e) for e in SUBSCRIBABLE))
    a.add_argument("--secret", help="signing secret (8-512 chars; default: generated)")
    a.add_argument("--format", choices=webhooks.FORMATS, default="json",
                   help="json (default) or slack (text + blocks)")
    a.add_argument("--plugin", help="only alerts of this plugin")
    a.add_argument("--description", help="free text shown in listings")
    a.add_argument("--max-attempts", type=int, help="attempts before dead-letter (default 8)")
    a.add_argument("--timeout", type=float, help="seconds per attempt (default 10)")
    a.add_argument("--rate-limit", default="20/60", metavar="N/SECONDS",
                   help="at most N messages per SECONDS, then a digest (default 20/60)")
    a.add_argument("--spike", default="50/300", metavar="N/SECONDS",
                   help="crash.spike: N crashes of one group within SECONDS (default 50/300)")
    a.add_argument("--regression-points", type=float, default=5.0, metavar="X",
                   help="profile.regression: share growth in percentage points (default 5)")
    a.add_argument("--baseline", metavar="LABELS",
                   help="profile.regression baseline selection, e.g. version=1.2 "
                        "(default: the plugin's earlier profiles)")
    a.set_defaults(func=run_add)

    ls = sub.add_parser("list", parents=[common], help="list webhooks")
    ls.set_defaults(func=run_list)

    rm = sub.add_parser("remove", parents=[common], help="remove a webhook (cancels its queue)")
    rm.add_argument("id", type=int)
    rm.set_defaults(func=run_remove)

    t = sub.add_parser("test", parents=[common], help="send a test delivery now")
    t.add_argument("id", type=int)
    t.set_defaults(func=run_test)

    d = sub.add_parser("deliveries", parents=[common], help="list deliveries")
    d.add_argument("--status", choices=outbox.STATUSES, help="dead = the dead-letter queue")
    d.add_argument("--webhook", type=int, metavar="ID")
    d.add_argument("--limit", type=int, default=50)
    d.set_defaults(func=run_deliveries)

    rd = sub.add_parser("redeliver", parents=[common], help="queue a delivery again")
    rd.add_argument("delivery_id")
    rd.set_defaults(func=run_redeliver)


def _db(args: argparse.Namespace) -> Any:
    from wasmprof.store.state import open_store
    return open_store(store_config_from_args(args)).db


def _t(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def run_add(args: argparse.Namespace) -> int:
    try:
        events = parse_event_list(args.events)
    except ValueError as e:
        raise UsageError(str(e), source="--events") from None
    rate, window = _rate(args.rate_limit, "rate-limit")
    spike, spike_window = _rate(args.spike, "spike")
    spec = WebhookSpec(url=args.url, events=events, secret=args.secret, format=args.format,
                       plugin=args.plugin, description=args.description,
                       max_attempts=args.max_attempts, timeout=args.timeout, rate_limit=rate,
                       rate_window=window, spike_threshold=spike, spike_window=spike_window,
                       regression_points=args.regression_points, baseline=args.baseline)
    db = _db(args)
    hook = webhooks.create(db, spec, now=time.time())
    if args.json:
        write_json(hook.to_dict(show_secret=True))
        return 0
    print(f"webhook {hook.id} added: {clean(hook.url)}")
    print(f"  events: {', '.join(str(e) for e in hook.events)}; format {hook.format}"
          + (f"; plugin {clean(hook.plugin)}" if hook.plugin else ""))
    print(f"  secret: {hook.secret}")
    print("  (shown once: receivers verify X-Wasmprof-Signature with it; see docs/webhooks.md)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    hooks_ = webhooks.list_all(_db(args))
    if args.json:
        write_json({"webhooks": [h.to_dict() for h in hooks_]})
        return 0
    if not hooks_:
        print("no webhooks (add one with `wasmprof webhook add URL --events …`)")
        return 0
    for h in hooks_:
        state = "" if h.enabled else " [disabled]"
        stats = ", ".join(f"{n} {s}" for s, n in sorted(h.stats.items())) or "no deliveries"
        print(f"{h.id:>4}  {clean(h.url)}{state}")
        print(f"      events {', '.join(str(e) for e in h.events)}; format {h.format}"
              + (f"; plugin {clean(h.plugin)}" if h.plugin else "")
              + f"; rate {h.rate_limit}/{h.rate_window:g}s; {stats}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    ok = webhooks.remove(_db(args), args.id, now=time.time())
    if args.json:
        write_json({"removed": args.id if ok else None})
    elif ok:
        print(f"webhook {args.id} removed; its undelivered deliveries are cancelled")
    else:
        print(f"wasmprof: no webhook {args.id}", file=sys.stderr)
    return 0 if ok else 1


def run_test(args: argparse.Namespace) -> int:
    from wasmprof.alerts.worker import DeliveryWorker   # httpx: only when sending

    db = _db(args)
    hook = webhooks.get(db, args.id)
    if hook is None:
        print(f"wasmprof: no webhook {args.id}", file=sys.stderr)
        return 1
    did = hooks.queue_test(db, hook)
    worker = DeliveryWorker(db, base_url=hooks.public_url(), policy=RetryPolicy.from_env(),
                            concurrency=1)
    try:
        worker.run_once(only_id=did)
    finally:
        worker.stop()
    d = outbox.get_delivery(db, did)
    assert d is not None
    if args.json:
        write_json(d.to_dict())
    else:
        last = d.attempt_log[-1] if d.attempt_log else {}
        print(f"delivery {d.id} to {clean(hook.url)}: {d.status}"
              + (f" (HTTP {last.get('status_code')}, {last.get('duration_ms')} ms)"
                 if last.get("status_code") else "")
              + (f": {d.last_error}" if d.last_error else ""))
    return 0 if d.status == "delivered" else 1


def run_deliveries(args: argparse.Namespace) -> int:
    items = outbox.list_deliveries(_db(args), webhook_id=args.webhook, status=args.status,
                                   limit=args.limit)
    if args.json:
        write_json({"deliveries": [d.to_dict() for d in items]})
        return 0
    if not items:
        print("no deliveries")
        return 0
    for d in items:
        extra = f" ({d.item_count} alerts)" if d.event == "alerts.digest" else ""
        print(f"{d.id}  webhook {d.webhook_id}  {d.event}{extra}  {d.status}  "
              f"attempts {d.attempts}  created {_t(d.created_at)}"
              + (f"  next {_t(d.next_attempt_at)}" if d.next_attempt_at else "")
              + (f"\n    last error: {d.last_error}" if d.last_error else ""))
    return 0


def run_redeliver(args: argparse.Namespace) -> int:
    d = outbox.redeliver(_db(args), args.delivery_id, now=time.time())
    if d is None:
        print(f"wasmprof: {clean(args.delivery_id, 80)} is unknown, pending, cancelled or its "
              "webhook was removed", file=sys.stderr)
        return 1
    if args.json:
        write_json(d.to_dict())
    else:
        print(f"delivery {d.id} queued again; a running `wasmprof serve` sends it")
    return 0
