"""``python -m bench``: the vault's throughput beside bare AES-GCM, measured in one run."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version

from bench.consent_check import CUSTOMERS as CONSENT_CUSTOMERS
from bench.consent_check import ITEMS as CONSENT_ITEMS
from bench.consent_check import RUNS as CONSENT_RUNS
from bench.consent_check import measure as measure_consent
from bench.consent_single import LARGE as SINGLE_LARGE
from bench.consent_single import SAMPLE as SINGLE_SAMPLE
from bench.consent_single import SMALL as SINGLE_SMALL
from bench.consent_single import measure as measure_single
from bench.crypto import ARGON2_PRODUCTION, aesgcm_rates, argon2_rate
from bench.decide import measure as measure_decide
from bench.ledger import measure as measure_ledger
from bench.oauth_api import CLIENT_THREADS, ROUNDS, WORKERS
from bench.oauth_api import measure as measure_api
from bench.profile_store import CUSTOMERS, profile_store
from bench.timing import Rate

NOTE = (
    "How to read: ratio = baseline rate / vault rate, i.e. how many bare AES-GCM passes over "
    "the same bytes fit in one vault operation; the rest is database, ORM, JSON and data-key "
    "unwrapping (for passwords: argon2id's deliberate cost)."
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Profile writes/reads and password hashing per second on this machine, "
        "each beside raw AES-GCM on the same payloads, measured in the same run.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="time per measurement (default: 2; the whole run takes about 6x this)",
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL of a PostgreSQL database to run against, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test (a schema of its own is created "
        "and dropped); default: SQLite in a temporary directory",
    )
    parser.add_argument(
        "--only",
        choices=["all", "store", "api", "consent", "single", "ledger", "messages"],
        default="all",
        help="store: profile writes/reads and password hashing; api: GET /api/v1/profile and "
        "the token endpoint under gunicorn beside a bare Flask app; consent: one HTTP batch "
        f"check of {CONSENT_ITEMS:,} items beside a raw SQL fetch of the same rows; "
        "single: one customer's check and GET /api/v1/consents/{sub} at "
        f"{SINGLE_SMALL:,} and {SINGLE_LARGE:,} customers of one vendor, and under gunicorn "
        "beside a bare Flask app running the same SQL; "
        "ledger: consent-ledger appends beside raw INSERT+COMMIT and verify beside bare "
        "hashlib; messages: POST /api/v1/messages beside bare Flask running the same SQL, "
        "and worker deliveries into an SMTP sink beside raw smtplib (default: all)",
    )
    parser.add_argument(
        "--ledger-events",
        type=int,
        default=1_000_000,
        help="events generated for the ledger verify measurement (default: 1,000,000, "
        "which takes about a minute or two to generate and verify)",
    )
    parser.add_argument(
        "--single-customers",
        type=int,
        default=SINGLE_LARGE,
        help=f"customers of the large vendor in the single measurement (default: "
        f"{SINGLE_LARGE:,}; filled by bulk insert in about a minute or two)",
    )
    args = parser.parse_args(argv)
    if args.single_customers < 1:
        parser.error("--single-customers must be at least 1")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.ledger_events < 1:
        parser.error("--ledger-events must be at least 1")
    return args


def _rate(rate: Rate) -> str:
    per_second = rate.per_second
    text = f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.3g}"
    return f"{text} /s"


def _each(rate: Rate) -> str:
    seconds = rate.seconds_each
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _api_section(args: argparse.Namespace) -> None:
    _progress(
        f"API under gunicorn -w {WORKERS}: GET /api/v1/profile beside bare Flask with and "
        f"without the same SQL, {ROUNDS} rounds in turn ({4 * args.seconds:g} s plus start-up)"
    )
    load = _load_average()
    result = measure_api(args.seconds, args.database_url)
    goal = result.api.per_second / result.bare_sql.per_second
    per_round = sorted(r[0] for r in result.round_ratios)
    low, median, high = per_round[0], statistics.median(per_round), per_round[-1]
    cpu = {name: seconds * 1e3 for name, seconds in result.cpu_each.items()}
    rows = [
        ["measurement", "vault", "baseline", "rate", "vault/baseline", "goal"],
        [
            "GET /api/v1/profile (bearer token)",
            _rate(result.api),
            "bare Flask + the same 3 SQL statements",
            _rate(result.bare_sql),
            f"{goal:.2f} ({low:.2f}-{high:.2f}, median {median:.2f})",
            f">= 0.50 {'met' if goal >= 0.5 else 'NOT met'}",
        ],
        [
            "",
            "",
            "bare Flask, same JSON body, no SQL",
            _rate(result.bare),
            f"{result.api.per_second / result.bare.per_second:.2f}",
            "(for information)",
        ],
        [
            f"POST /oauth/token ({result.token_grant} grant, sequential)",
            _rate(result.token),
            "",
            "",
            "",
            "",
        ],
    ]
    errors = ", ".join(f"{name} {count}" for name, count in result.errors.items())
    print(f"database: {result.database}; load average before: {load}")
    print(
        f"gunicorn -w {WORKERS} (sync workers) for each app, all three up, loaded in turn "
        f"for {ROUNDS} rounds; {CLIENT_THREADS} client threads on loopback, a new connection "
        f"per request; response body {result.body_bytes} bytes; errors: {errors}"
    )
    print()
    print(_table(rows, right={1, 3, 4}))
    print(
        f"server CPU per request (workers' user + system time): vault {cpu['vault']:.2f} ms, "
        f"bare + SQL {cpu['bare + SQL']:.2f} ms (ratio {cpu['bare + SQL'] / cpu['vault']:.2f}), "
        f"bare {cpu['bare']:.2f} ms"
    )
    print()
    print(
        "How to read: vault/baseline = vault requests/s divided by the baseline's on the same "
        "server, client and body (in brackets: the lowest, highest and median of the rounds); "
        "the CPU ratio is the same comparison, free of what else the machine runs. The goal's "
        "baseline runs the read's three statements (token with client, grant and customer; key "
        "and encrypted fields; access-log INSERT + COMMIT), compiled from the vault's own, "
        "through the DB-API, without OAuth logic, limits, crypto or ORM. Token requests are "
        "sequential: each refresh uses the refresh token the previous one returned (rotation)."
    )


def _load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value >= 0.1 else f"{value * 1e3:.1f} ms"


def _decide_section(args: argparse.Namespace) -> None:
    _progress(f"pure decide(): a mix of 1,000 customers ({2 * args.seconds:g} s)")
    result = measure_decide(args.seconds)
    rows = [
        ["measurement", "vault", "baseline", "rate", "vault/baseline"],
        [
            "consent.engine.decide (pure)",
            f"{result.decide.per_second:,.0f} decisions/s",
            "the same lookups, no rules or reasons",
            f"{result.baseline.per_second:,.0f} /s",
            f"{result.decide.per_second / result.baseline.per_second:.2f}",
        ],
    ]
    print(_table(rows, right={1, 3, 4}))
    print()
    print(
        "How to read: decide() walks the whole precedence, writes the reason sentence and "
        "applies quiet hours and caps; the baseline only reads the same settings."
    )
    print()


def _consent_section(args: argparse.Namespace) -> None:
    _decide_section(args)
    _progress(
        f"consent check: {CONSENT_CUSTOMERS:,} customers by bulk insert, then "
        f"{CONSENT_RUNS} HTTP checks of {CONSENT_ITEMS:,} items under gunicorn -w 1"
    )
    result = measure_consent(args.database_url)
    http, raw = result.http_median, result.raw_median
    met = "met" if http < 1.0 else "NOT met"
    rows = [
        ["measurement", "median", "best", "worst", "goal"],
        [
            f"POST /api/v1/consents/check, {result.items:,} items, end to end",
            _seconds(http),
            _seconds(min(result.http)),
            _seconds(max(result.http)),
            f"< 1 s {met}",
        ],
        [
            f"baseline: raw SQL fetch of the same {result.raw_rows:,} rows",
            _seconds(raw),
            _seconds(min(result.raw_sql)),
            _seconds(max(result.raw_sql)),
            "",
        ],
    ]
    print(f"database: {result.database}")
    print(
        f"{result.customers:,} customers of one vendor with a mix of settings; request "
        f"{result.request_bytes:,} bytes, response {result.response_bytes:,} bytes; "
        f"{len(result.http)} runs each, interleaved"
    )
    print("outcomes: " + ", ".join(f"{rule} {n:,}" for rule, n in result.outcomes.items()))
    print()
    print(_table(rows, right={1, 2, 3}))
    print()
    print(
        f"check/raw SQL = {http / raw:.1f}x. How to read: end to end is the client encoding "
        "the batch, loopback HTTP, bearer-token check, validation, mapping pairwise subjects, "
        "the snapshot load, one decide() per item, JSON out, and the client parsing it; the "
        "baseline only fetches, with hand-written SQL, the rows the check reads."
    )


def _ms(rate: Rate) -> str:
    return f"{rate.seconds_each * 1e3:.2f} ms"


def _single_section(args: argparse.Namespace) -> None:
    load = _load_average()
    result = measure_single(
        args.seconds, args.database_url, large=args.single_customers, progress=_progress
    )
    small, large = result.small, result.large
    check_ratio = result.check[large].seconds_each / result.check[small].seconds_each
    view_ratio = result.view[large].seconds_each / result.view[small].seconds_each
    grown = result.check[large].seconds_each / result.alone["check"].seconds_each
    print(f"database: {result.database}; load average before: {load}, after: {_load_average()}")
    fills = ", ".join(
        f"{n:,} customers ({result.rows[n]:,} rows) in {result.fill_seconds[n]:.1f} s"
        for n in (small, large)
    )
    print(f"bulk insert (DB-API executemany / COPY, tables not analysed): {fills}")
    print()
    rows = [
        ["one customer's answer (in-process)", f"{small:,} customers", f"{large:,} customers",
         f"{large:,}/{small:,}", "goal"],
        [
            "POST /api/v1/consents/check, 1 item",
            _ms(result.check[small]),
            _ms(result.check[large]),
            f"{check_ratio:.2f}",
            f"<= 1.5 {'met' if check_ratio <= 1.5 else 'NOT met'}",
        ],
        [
            "GET /api/v1/consents/{sub}",
            _ms(result.view[small]),
            _ms(result.view[large]),
            f"{view_ratio:.2f}",
            "",
        ],
        [
            f"  check, {small:,}-customer vendor alone in the database",
            _ms(result.alone["check"]),
            "",
            f"{grown:.2f}",
            "(for information)",
        ],
    ]  # fmt: skip
    print(_table(rows, right={1, 2, 3}))
    print()
    http, cpu = result.http, {name: s * 1e3 for name, s in result.cpu_each.items()}
    rows = [["under gunicorn", "vault", "baseline: bare Flask + the same SQL", "vault/baseline",
             "server CPU vault/bare", "goal"]]  # fmt: skip
    for name, label in (("check", "POST /api/v1/consents/check, 1 item"),
                        ("view", "GET /api/v1/consents/{sub}")):  # fmt: skip
        vault, bare = http[f"vault {name}"], http[f"bare {name}"]
        ratio = vault.per_second / bare.per_second
        rows.append(
            [
                f"{label} ({result.statements[name]} statements)",
                _rate(vault),
                _rate(bare),
                f"{ratio:.2f}",
                f"{cpu[f'vault {name}']:.2f} / {cpu[f'bare {name}']:.2f} ms",
                f">= 0.50 {'met' if ratio >= 0.5 else 'NOT met'}",
            ]
        )
    print(_table(rows, right={1, 2, 3, 4}))
    errors = ", ".join(f"{name} {count}" for name, count in result.errors.items())
    print(f"errors: {errors}")
    print()
    print(
        f"How to read: in-process = the whole request through Flask's test client (token, "
        f"limits, validation, subject, snapshot, decide, JSON; no network) for {SINGLE_SAMPLE:,} "
        f"random customers of each vendor; the two vendors share the tables and are timed in "
        f"alternating rounds, and the small vendor was also timed before the large one was "
        f"added. Under gunicorn -w {WORKERS}, {CLIENT_THREADS} client threads, a new "
        f"connection per request, one customer of the {large:,}-customer vendor; the baseline "
        "runs the statements the vault ran for the same request (captured with their "
        "parameters) through the DB-API and returns the vault's body: no OAuth logic, limits, "
        "validation, ORM or decide()."
    )


def _ledger_section(args: argparse.Namespace) -> None:
    _progress(
        f"consent ledger: appends, raw INSERT+COMMIT ({2 * args.seconds:g} s), then "
        f"{args.ledger_events:,} events generated and verified"
    )
    result = measure_ledger(args.seconds, args.ledger_events, args.database_url)
    append_ratio = result.append.per_second / result.raw_insert.per_second
    verify_ratio = result.verify.per_second / result.hashlib.per_second
    rows = [
        ["measurement", "vault", "baseline", "rate", "vault/baseline", "goal"],
        [
            "ledger append (1 event per transaction)",
            _rate(result.append),
            "raw 1-row INSERT+COMMIT, same columns and indexes",
            _rate(result.raw_insert),
            f"{append_ratio:.2f}",
            f">= 0.50 {'met' if append_ratio >= 0.5 else 'NOT met'}",
        ],
        [
            f"ledger verify ({result.events:,} events, one process)",
            f"{result.verify.seconds:.1f} s, {result.verify.per_second:,.0f} events/s",
            "bare hashlib.sha256 over the same bytes, 1 thread",
            f"{result.hashlib.per_second:,.0f} /s",
            f"{verify_ratio:.2f}",
            f"<= 15 s per 1,000,000 "
            f"{'met' if result.verify.seconds * 1_000_000 / result.events <= 15 else 'NOT met'}",
        ],
        [
            "  peak resident memory of the verifying process",
            f"{result.verify_peak_mb:,.0f} MB",
            "",
            "",
            "",
            f"< 150 MB {'met' if result.verify_peak_mb < 150 else 'NOT met'}",
        ],
    ]
    print(f"database: {result.database}")
    print(
        f"one client thread; events average {result.event_bytes / result.events:,.0f} bytes of "
        f"canonical JSON; generating the events took {result.generate_seconds:.1f} s"
    )
    print()
    print(_table(rows, right={1, 3, 4}))
    print()
    print(
        "How to read: append = vault.consents.ledger.append (lock the head row, spell and "
        "hash the body, insert, move the head) + commit, against one DB-API INSERT + COMMIT; "
        "verify = vault.consents.ledger.verify (stream seq, hash, body and the columns kept "
        "beside it, in batches through a server-side cursor; parse and hash every body here; "
        "check seq, links, columns and head) in a fresh process, as the CLI runs it; "
        "hashlib alone is printed for information."
    )


def _messages_section(args: argparse.Namespace) -> None:
    from bench.messages import QUEUED, report
    from bench.messages import measure as measure_messages

    _progress(
        f"messages: POST /api/v1/messages under gunicorn -w {WORKERS} beside bare Flask + the "
        f"same SQL ({args.seconds:g} s), then the worker delivering {QUEUED} messages"
    )
    load = _load_average()
    result = measure_messages(args.seconds, args.database_url)
    print(f"load average before: {load}")
    print("\n".join(report(result)))
    print(
        "How to read: the API baseline runs the statements of an accepted message (token, "
        "subject, key, topic, ledger head, the customer's consent queries, data key, message "
        "and contact-log INSERTs, COMMIT) through the DB-API, without OAuth logic, "
        "validation, the consent engine, encryption or ORM. The worker claims, decides again, "
        "decrypts address and content, builds MIME and records each outcome with a commit; "
        "the baseline sends ready-built messages over one open SMTP connection."
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    if args.only == "consent":
        print(
            f"CMR Vault consent check benchmark: {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        )
        _consent_section(args)
        print(f"(whole run: {time.perf_counter() - started:.1f} s)")
        return 0
    if args.only == "single":
        cpus, python = os.cpu_count(), platform.python_version()
        print(f"CMR Vault single consent answer benchmark: {cpus} CPUs, Python {python}")
        _single_section(args)
        print(f"(whole run: {time.perf_counter() - started:.1f} s)")
        return 0
    if args.only == "api":
        print(f"CMR Vault API benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}")
        _api_section(args)
        print(f"(whole run: {time.perf_counter() - started:.1f} s)")
        return 0
    if args.only == "messages":
        cpus, python = os.cpu_count(), platform.python_version()
        print(f"CMR Vault messages benchmark: {cpus} CPUs, Python {python}")
        _messages_section(args)
        print(f"(whole run: {time.perf_counter() - started:.1f} s)")
        return 0
    if args.only == "ledger":
        cpus, python = os.cpu_count(), platform.python_version()
        print(f"CMR Vault ledger benchmark: {cpus} CPUs, Python {python}")
        _ledger_section(args)
        print(f"(whole run: {time.perf_counter() - started:.1f} s)")
        return 0
    _progress("building the database with the migrations")
    with profile_store(args.database_url) as store:
        payloads = store.payloads()
        _progress(f"profile writes ({args.seconds:g} s)")
        writes = store.measure_writes(args.seconds)
        _progress(f"profile reads ({args.seconds:g} s)")
        reads = store.measure_reads(args.seconds)
        where = store.target.description
    _progress(f"argon2id password hashes ({args.seconds:g} s)")
    hashes = argon2_rate(args.seconds)
    _progress(f"baseline: bare AES-GCM ({1.5 * args.seconds:g} s)")
    seal, open_, round_trip = aesgcm_rates(payloads, args.seconds)

    fields = len(payloads)
    size = sum(len(plaintext) for plaintext, _ in payloads)
    time_cost, memory_cost, lanes = ARGON2_PRODUCTION
    rows = [
        ["measurement", "vault", "each", "baseline: bare AES-GCM", "rate", "ratio"],
        [
            "profile write (save_profile + commit)",
            _rate(writes),
            _each(writes),
            f"encrypt {fields} fields",
            _rate(seal),
            f"{seal.per_second / writes.per_second:,.0f}x",
        ],
        [
            "profile read (load_profile, decrypt all)",
            _rate(reads),
            _each(reads),
            f"decrypt {fields} fields",
            _rate(open_),
            f"{open_.per_second / reads.per_second:,.0f}x",
        ],
        [
            f"password hash (argon2id t={time_cost}, {memory_cost // 1024} MiB, p={lanes})",
            _rate(hashes),
            _each(hashes),
            f"encrypt+decrypt {fields} fields",
            _rate(round_trip),
            f"{round_trip.per_second / hashes.per_second:,.0f}x",
        ],
    ]
    print(
        f"CMR Vault benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"cryptography {version('cryptography')}, argon2-cffi {version('argon2-cffi')}"
    )
    print(f"database: {where}")
    print(
        f"a full profile: {fields} encrypted fields, {size:,} bytes of plaintext; "
        f"{CUSTOMERS} customers; ~{args.seconds:g} s per measurement, one client thread"
    )
    print()
    print(_table(rows, right={1, 2, 4, 5}))
    print()
    print(NOTE)
    if args.only == "all":
        print()
        _api_section(args)
        print()
        _ledger_section(args)
        print()
        _consent_section(args)
        print()
        _single_section(args)
    print(f"(whole run: {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
