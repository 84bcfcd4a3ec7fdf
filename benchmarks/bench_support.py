"""The support desk under an outage's load: ticket intake, a bulk reply, FAQ search.

Three measurements, each with a baseline measured in the same run:

1. **Intake.** The operations app served by uvicorn (one process, SQLite in WAL mode, as
   ``haltguard serve`` runs it) takes contact-form questions over HTTP
   (``POST /api/support/public/tickets``): first a sustained ``--rate`` a second for
   ``--sustained-s`` seconds, then a burst of ``--burst`` questions sent at once by
   ``--clients`` concurrent connections. Latency is from send to answer at the client. The
   baseline is ``GET /help/contact`` (the same app and connection, no database write). Run
   twice: the app alone ("framework"), then with the contact form's fast path in front
   (``support/fastlane.py``, as ``serve`` runs it).
2. **Bulk reply.** ``--bulk-tickets`` tickets linked to one incident (written directly; their
   intake is measured above), then ``flows.bulk_reply``: one message per ticket, one queued
   mail per customer. The baseline is inserting the same number of plain message rows.
3. **Search.** ``--articles`` published articles (generated Japanese and English), then
   ``--queries`` queries of each kind (a katakana word, a two-kanji word, a Japanese phrase,
   an English word, a miss), each searched afresh; "repeated" is the same questions asked
   through the public routes' kept answers (``search.AnswerCache``, 5 s), as an outage's
   repeated questions arrive. The baseline is loading one article by its slug.

Usage::

    .venv/bin/python benchmarks/bench_support.py [--rate 14] [--sustained-s 10]
        [--burst 500] [--clients 50] [--bulk-tickets 50000] [--articles 5000] [--queries 200]

Prints a Markdown table. The client runs on the same machine and shares its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import insert

from haltguard.app.operations import create_app
from haltguard.common.clock import SystemClock
from haltguard.common.taxonomy import Category
from haltguard.db.keys import Keyring, KeySettings
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import IncidentCreate, PublicUpdateCreate, Severity
from haltguard.status.settings import StatusSettings
from haltguard.support import flows, search, service
from haltguard.support.fastlane import with_contact_form_lane
from haltguard.support.models import ArticleCreate, SupportMessage, SupportTicket
from haltguard.support.settings import SupportSettings
from haltguard.web.settings import Settings

KATAKANA = ["キャンセル", "ログイン", "パスワード", "ウォレット", "アカウント", "レバレッジ",
            "サーキットブレーカー", "メンテナンス", "ビットコイン", "イーサリアム"]
KANJI = ["資産", "出金", "入金", "補償", "注文", "取引", "停止", "口座", "手数料", "残高",
         "約定", "送金", "本人確認", "税金", "板情報"]
ENGLISH = ["withdrawal", "deposit", "halt", "order", "fee", "wallet", "login", "margin",
           "compensation", "balance"]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _ratio(values: list[float], baseline: list[float]) -> float:
    """The p99 of ``values`` over the p99 of ``baseline``."""
    return _percentile(values, 0.99) / _percentile(baseline, 0.99)


def _ms(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1000:.1f} ms, "
            f"p99 {_percentile(values, 0.99) * 1000:.1f} ms")


def _engine(directory: Path) -> Any:
    keys = KeySettings(data_dir=directory, audit_key=bytes(32), secrets_key=bytes(range(32)),
                       anchor_file=directory / "anchor.log")
    engine = make_engine(f"sqlite:///{directory / 'haltguard.sqlite3'}", keyring=Keyring(keys))
    upgrade(engine)
    return engine


def _incident(factory: Any) -> int:
    with session_scope(factory) as session:
        return incident_flows.open_incident(session, IncidentCreate(
            title="Matching engine stalled", category=Category.SOFTWARE_BUG,
            severity=Severity.SEV1, affected_markets=["BTC-JPY"]), actor="bench",
            clock=SystemClock()).id


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off", timeout_keep_alive=120))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def _form(n: int) -> dict[str, Any]:
    return {"subject": "取引できない", "body": f"BTC-JPY の注文がキャンセルできません ({n})",
            "customer_email": f"c{n % 40_000}@example.com", "customer_name": f"客{n}"}


async def _intake(url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"sustained": [], "burst": [], "baseline": []}
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def timed(kind: str, coroutine: Any) -> None:
            start = time.perf_counter()
            response = await coroutine
            found[kind].append(time.perf_counter() - start)
            assert response.status_code in {200, 201}, response.text

        for _ in range(50):
            await timed("baseline", client.get("/help/contact"))
        found["baseline"].clear()
        interval = 1 / args.rate
        tasks = []
        start = time.perf_counter()
        for n in range(int(args.rate * args.sustained_s)):
            await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
            tasks.append(asyncio.create_task(timed("sustained", client.post(
                "/api/support/public/tickets", json=_form(n)))))
            tasks.append(asyncio.create_task(timed("baseline", client.get("/help/contact"))))
        await asyncio.gather(*tasks)
        burst_start = time.perf_counter()
        await asyncio.gather(*(timed("burst", client.post(
            "/api/support/public/tickets", json=_form(100_000 + n))) for n in range(args.burst)))
        found["burst_elapsed"] = [time.perf_counter() - burst_start]
    return found


def _bulk(factory: Any, incident_id: int, count: int) -> tuple[float, float, Any]:
    now = datetime.now(UTC)
    rows = [{"channel": "form", "category": "incident", "status": "new", "language": "ja",
             "subject": "取引できない", "body": "BTC-JPY が止まっています",
             "customer_name": f"客{n}", "customer_email": f"c{n % (count * 4 // 5)}@example.com",
             "customer_key": f"email:{n % (count * 4 // 5)}", "account": None,
             "incident_id": incident_id, "link_reason": "bench", "assignee": None,
             "source_key": None, "rating_token": "x", "created_at": now,
             "first_response_due_at": now, "resolution_due_at": now,
             "first_response_at": None, "resolved_at": None, "first_response_breach_at": None,
             "resolution_breach_at": None, "satisfaction": None, "satisfaction_comment": ""}
            for n in range(count)]
    with session_scope(factory) as session:
        for start in range(0, count, 5_000):
            session.execute(insert(SupportTicket), rows[start:start + 5_000])
        incident = incidents.get(session, incident_id)
        incidents.post_public_update(session, incident, PublicUpdateCreate(
            message_ja="原因を特定しました", message_en="Cause identified"), actor="bench",
            now=now)
    started = time.perf_counter()
    with session_scope(factory) as session:
        answer = flows.bulk_reply(session, incident_id, update_entry_id=None, macro_name="",
                                  actor="bench", settings=SupportSettings(),
                                  status_settings=StatusSettings(), now=now)
    bulk_s = time.perf_counter() - started
    ticket_ids = list(range(1, count + 1))
    started = time.perf_counter()
    with session_scope(factory) as session:
        for start in range(0, count, 2_000):
            session.execute(insert(SupportMessage), [
                {"ticket_id": ticket_ids[n % len(ticket_ids)], "author_kind": "agent",
                 "author": "bench", "body": "x" * 400, "created_at": now, "bulk_reply_id": None}
                for n in range(start, min(count, start + 2_000))])
    baseline_s = time.perf_counter() - started
    return bulk_s, baseline_s, answer


def _article(n: int, rng: random.Random) -> ArticleCreate:
    words = rng.sample(KATAKANA, 2) + rng.sample(KANJI, 3)
    english = rng.sample(ENGLISH, 3)
    body_ja = "。".join(f"{word}についてのご案内です" for word in words) * 3
    return ArticleCreate(
        slug=f"article-{n}", category=rng.choice(["trading", "account", "security"]),
        title_ja=f"{words[0]}と{words[2]}について（{n}）", title_en=f"About {english[0]} ({n})",
        body_ja=body_ja, body_en=" ".join(f"How {word} works." for word in english) * 5,
        keywords=" ".join(words[:2]))


def _search(factory: Any, count: int, queries: int) -> dict[str, list[float]]:
    rng = random.Random(7)
    now = datetime.now(UTC)
    with session_scope(factory) as session:
        for n in range(count):
            service.create_article(session, _article(n, rng), actor="bench", now=now)
    kinds = {
        "katakana": lambda: rng.choice(KATAKANA),
        "two kanji": lambda: rng.choice([k for k in KANJI if len(k) == 2]),
        "phrase": lambda: f"{rng.choice(KANJI)}は{rng.choice(KATAKANA)}できますか",
        "english": lambda: rng.choice(ENGLISH),
        "miss": lambda: "ステーキング報酬",
    }
    found: dict[str, list[float]] = {kind: [] for kind in kinds}
    found["baseline"] = []
    found["repeated"] = []
    answers = search.AnswerCache()
    with session_scope(factory) as session:
        for _ in range(queries):
            for kind, make in kinds.items():
                query = make()
                start = time.perf_counter()
                search.search(session, query, language="ja")
                found[kind].append(time.perf_counter() - start)
                start = time.perf_counter()
                key = answers.key("api", query, "ja")
                if answers.get(key) is None:
                    answers.put(key, search.search(session, query, language="ja"))
                found["repeated"].append(time.perf_counter() - start)
            start = time.perf_counter()
            service.get_article(session, f"article-{rng.randrange(count)}", published_only=True)
            found["baseline"].append(time.perf_counter() - start)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=14.0)
    parser.add_argument("--sustained-s", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--bulk-tickets", type=int, default=50_000)
    parser.add_argument("--articles", type=int, default=5_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-support-") as temporary:
        base = Path(temporary)
        for name in ("intake", "bulk", "search"):
            (base / name).mkdir()
        engine = _engine(base / "intake")
        factory = make_session_factory(engine)
        _incident(factory)
        app = create_app(Settings(database_url="unused", migrate_on_start=False),
                         engine=engine, escalation_interval_s=None,
                         support_settings=SupportSettings(form_per_minute=10_000))
        for name, served in (("framework", app), ("fast path", with_contact_form_lane(app))):
            server, thread, url = _serve(served)
            try:
                intake = asyncio.run(_intake(url, args))
            finally:
                server.should_exit = True
                thread.join(10)
            burst_rate = args.burst / intake["burst_elapsed"][0]
            rows.append((f"form tickets ({name}), sustained {args.rate:g}/s for "
                         f"{args.sustained_s:g} s", _ms(intake["sustained"]),
                         f"baseline GET /help/contact: {_ms(intake['baseline'])}"))
            rows.append((f"form tickets ({name}), burst of {args.burst} ({args.clients} "
                         f"connections)", _ms(intake["burst"]) +
                         f", {burst_rate:.0f} tickets/s taken", f"p99 ratio to the baseline: "
                         f"{_ratio(intake['burst'], intake['baseline']):.1f}x"))
        engine.dispose()

        engine = _engine(base / "bulk")
        factory = make_session_factory(engine)
        bulk_s, baseline_s, answer = _bulk(factory, _incident(factory), args.bulk_tickets)
        rows.append((f"bulk reply to {args.bulk_tickets} tickets",
                     f"{bulk_s:.2f} s ({answer.mails_queued} mails queued)",
                     f"baseline: {args.bulk_tickets} plain message rows in {baseline_s:.2f} s "
                     f"({bulk_s / baseline_s:.1f}x)"))
        engine.dispose()

        engine = _engine(base / "search")
        factory = make_session_factory(engine)
        found = _search(factory, args.articles, args.queries)
        for kind in ("katakana", "two kanji", "phrase", "english", "miss", "repeated"):
            rows.append((f"search over {args.articles} articles: {kind}", _ms(found[kind]),
                         f"p99 ratio to a lookup by slug: "
                         f"{_ratio(found[kind], found['baseline']):.0f}x"))
        rows.append(("baseline: one article by slug", _ms(found["baseline"]), ""))
        engine.dispose()
    print(f"\nsupport desk, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| measurement | result | baseline (same run) |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
