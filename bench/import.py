"""CSV import benchmark: generate realistic leads, import them into a fresh database, report rows/s
and peak memory.

    .venv/bin/python bench/import.py                      # 1M rows into a fresh SQLite file
    .venv/bin/python bench/import.py --rows 200000        # smaller
    .venv/bin/python bench/import.py --db postgresql+psycopg://user:pw@127.0.0.1/bench
    .venv/bin/python bench/import.py --rerun              # also time a second run of the same file
    .venv/bin/python bench/import.py --rerun-changed Title  # ... of a copy in which every title differs
    .venv/bin/python bench/import.py --sqlite-floor       # SQLite's own cost per imported lead
    .venv/bin/python bench/import.py --sqlite-floor --bare  # ... without the secondary lead indexes

The generated file is a Salesforce-style lead export: names (with accents and apostrophes),
corporate and free-mail addresses, phones in national and international formats of a dozen
countries with the country in its own column (as a code or a name), companies with websites and
firmographics, titles, sources, lead statuses, owners, and two custom columns that end up in
attributes. About 1% of the rows are broken (invalid or missing emails, wrong field counts) and
0.2% repeat an earlier email. The file is cached by (rows, seed) in the output directory.

PostgreSQL: the database must exist and be empty (the script runs the migrations); the bench
truncates nothing. Results are documented in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import func, select, text

from leadflow.auth.models import User
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.imports.service import DEFAULT_CHUNK, run_import
from leadflow.leads.models import Account, Lead


def _words(text: str, sep: str | None = None) -> list[str]:
    return [w.strip() for w in text.split(sep) if w.strip()]


FIRST = _words(
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony "
    "Betty Mark Sandra Paul Ashley Steven Kimberly Andrew Emily Joshua Donna Kevin Michelle "
    "Brian Carol George Amanda Timothy Melissa Ronald Deborah Jason Stephanie Ryan Rebecca Jacob "
    "Laura Gary Helen Nicholas Sharon Eric Cynthia Jonathan Kathleen Stefan Anna Lukas Lena "
    "Jonas Marie Felix Sophie Maximilian Hannah Paul Mia Léa Chloé Hugo Louis Camille Manon "
    "Jules Inès José María Jürgen Søren Zoë Renée Björn Ólafur Ana Lucía Giulia Francesco Matteo "
    "Chiara Aarav Priya Arjun Ananya Wei Yuki Haruto Sakura Mohammed Fatima Omar Aisha Liam "
    "Olivia Noah Emma Oliver Ava Elijah"
)
LAST = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen "
    "Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Müller "
    "Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Dubois Lefèvre Moreau "
    "Laurent Bernard Girard Rossi Russo Ferrari Esposito Bianchi Romano Colombo O'Brien O'Connor "
    "McDonald MacLeod van der Berg de Vries Jansen Kowalski Nowak Novák Svensson Johansson "
    "Hansen Nielsen Sato Suzuki Takahashi Tanaka Patel Sharma Singh Kumar Gupta Chen Wang Li "
    "Zhang"
)
FREE_MAIL = _words(
    "gmail.com gmail.com gmail.com yahoo.com hotmail.com outlook.com gmx.de web.de icloud.com "
    "aol.com yahoo.co.uk orange.fr libero.it hotmail.fr"
)
WORDS = _words(
    "Acme Globex Initech Umbrella Stark Wayne Wonka Cyberdyne Soylent Tyrell Hooli Vandelay "
    "Aperture Massive Dynamic Oscorp Gringotts Nakatomi Blue Sun Red Rock Green Leaf Silver Lake "
    "North Star Bright Path Iron Bridge Clear Water Swift Stone Quantum Nimbus Vertex Apex "
    "Pinnacle Horizon Summit Atlas Orion Zenith Nova Helix Fusion Vector Pixel Cloud Data Logic "
    "Signal Harbor Maple Cedar Oak Falcon Eagle Lynx Otter Panda Tiger Polar Solar Lunar Terra "
    "Aqua Ember Crystal"
)
KINDS = _words(
    "Systems Labs Software Analytics Solutions Networks Robotics Health Foods Logistics Energy Capital"
)
INDUSTRIES = _words(
    "Software Manufacturing Healthcare Finance Retail Education Logistics Energy Media Consulting"
)
TITLES = _words(
    "CEO|CTO|CFO|Founder|VP Sales|VP of Marketing|Head of IT|Director of Operations|IT Director|"
    "Marketing Manager|Sales Manager|Procurement Manager|Senior Software Engineer|"
    "Software Engineer|Data Analyst|Marketing Coordinator|Account Executive|Office Manager|"
    "Purchasing Specialist|Product Manager|Engineering Lead|Consultant|Student|Assistant",
    sep="|",
)
SOURCES = _words(
    "Web|Webinar|Trade Show|Partner|Referral|Cold Call|Content Download|Advertisement|Email",
    sep="|",
)
STATUSES = (
    ["Open - Not Contacted"] * 5
    + ["Working - Contacted"] * 3
    + ["Nurturing", "Closed - Not Converted", "Closed - Converted", "", ""]
)
OWNERS = ["Alice Admin", "Bob Seller", "carol@bench.example", "Dan Rep", "Unknown Person", "", "", ""]
HEADER = [
    "Lead ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Company",
    "Title",
    "Lead Source",
    "Lead Status",
    "Country",
    "Website",
    "Industry",
    "No. of Employees",
    "Annual Revenue",
    "Lead Owner",
    "Email Opt Out",
    "Rating",
]


def _d(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def phone_for(rng: random.Random, country: str) -> str:
    """A phone number in one of the formats people type for that country."""

    r = rng.random()
    if country == "US":
        area = rng.choice(
            ["212", "213", "312", "415", "512", "617", "646", "702", "713", "718", "805", "917"]
        )
        ex, line = str(rng.randint(201, 989)), _d(rng, 4)
        return rng.choice(
            [
                f"({area}) {ex}-{line}",
                f"{area}-{ex}-{line}",
                f"{area}.{ex}.{line}",
                f"+1 {area} {ex} {line}",
                f"+1{area}{ex}{line}",
                f"1-{area}-{ex}-{line}",
                f"{area} {ex} {line} x{rng.randint(10, 999)}",
            ]
        )
    if country == "DE":
        if r < 0.5:
            return rng.choice(
                [f"030 {_d(rng, 8)}", f"089 {_d(rng, 7)}", f"+49 30 {_d(rng, 8)}", f"040/{_d(rng, 7)}"]
            )
        return rng.choice([f"0171 {_d(rng, 7)}", f"+49 151 {_d(rng, 8)}", f"0160-{_d(rng, 7)}"])
    if country == "GB":
        return rng.choice(
            [
                f"020 7946 {_d(rng, 4)}",
                f"+44 20 7946 {_d(rng, 4)}",
                f"07911 {_d(rng, 6)}",
                f"+44 7911 {_d(rng, 6)}",
                f"0161 496 {_d(rng, 4)}",
                f"+44 (0)161 496 {_d(rng, 4)}",
            ]
        )
    if country == "FR":
        return rng.choice(
            [
                f"01 {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)}",
                f"+33 6 {rng.randint(10, 79)} {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)}",
                f"06.{rng.randint(10, 79)}.{_d(rng, 2)}.{_d(rng, 2)}.{_d(rng, 2)}",
            ]
        )
    if country == "NL":
        return rng.choice([f"020 {_d(rng, 7)}", f"+31 6 12{_d(rng, 6)}"])
    if country == "ES":
        return rng.choice(
            [f"91 {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}", f"+34 6{_d(rng, 2)} {_d(rng, 3)} {_d(rng, 3)}"]
        )
    if country == "IT":
        return rng.choice([f"02 {_d(rng, 8)}", f"+39 33{rng.randint(0, 9)} {_d(rng, 7)}"])
    if country == "CA":
        return rng.choice(
            [f"(416) {rng.randint(201, 989)}-{_d(rng, 4)}", f"+1 604 {rng.randint(201, 989)} {_d(rng, 4)}"]
        )
    if country == "AU":
        return rng.choice(
            [f"(02) {_d(rng, 4)} {_d(rng, 4)}", f"+61 41{rng.randint(0, 9)} {_d(rng, 3)} {_d(rng, 3)}"]
        )
    if country == "IN":
        return rng.choice([f"+91 98{_d(rng, 3)} {_d(rng, 5)}", f"098{_d(rng, 3)} {_d(rng, 5)}"])
    if country == "BR":
        return rng.choice(
            [f"(11) 9{_d(rng, 4)}-{_d(rng, 4)}", f"+55 21 {rng.choice('2345')}{_d(rng, 3)}-{_d(rng, 4)}"]
        )
    return f"+{rng.randint(20, 99)} {_d(rng, 9)}"


COUNTRIES = [
    ("US", ["US", "USA", "United States", "United States of America"], ".com", 40),
    ("DE", ["DE", "Germany", "Deutschland"], ".de", 14),
    ("GB", ["GB", "UK", "United Kingdom"], ".co.uk", 14),
    ("FR", ["FR", "France"], ".fr", 8),
    ("NL", ["NL", "Netherlands"], ".nl", 4),
    ("ES", ["ES", "Spain"], ".es", 4),
    ("IT", ["IT", "Italy"], ".it", 4),
    ("CA", ["CA", "Canada"], ".ca", 4),
    ("AU", ["AU", "Australia"], ".com.au", 3),
    ("IN", ["IN", "India"], ".in", 3),
    ("BR", ["BR", "Brazil"], ".com.br", 2),
]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    weights = [c[3] for c in COUNTRIES]
    companies = []
    for i in range(max(50, rows // 20)):
        code, names, tld, _ = rng.choices(COUNTRIES, weights)[0]
        word = rng.choice(WORDS)
        name = f"{word} {rng.choice(KINDS)}" + (f" {i}" if i >= 2000 else "")
        suffix = {"DE": " GmbH", "GB": " Ltd", "FR": " SAS", "US": " Inc."}.get(code, "")
        slug = name.lower().replace(" ", "")
        companies.append((name + suffix, f"{slug}{tld}", code, names))
    emails: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            company, domain, code, cnames = rng.choice(companies)
            local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}", f"{first}"])
            local = "".join(ch for ch in local.lower().replace(" ", "").replace("'", "") if ch.isascii())
            local = f"{local or 'lead'}{i}"
            free = rng.random() < 0.25
            email = f"{local}@{rng.choice(FREE_MAIL) if free else domain}"
            r = rng.random()
            if r < 0.006:
                email = rng.choice(
                    [f"{local}@", f"{local} at {domain}", f"{local}@@{domain}", f"{local}@{domain}."]
                )
            elif r < 0.008:
                email = ""
            elif r < 0.010 and emails:
                email = rng.choice(emails[-1000:]).upper()
            emails.append(email)
            r = rng.random()
            phone = phone_for(rng, code) if r < 0.85 else ""
            if r < 0.01:  # numbers no country uses: stored raw, the lead flagged
                phone = rng.choice(["555-1234", "12345", "+1 (000) 000-0000", "0000000000", "call me"])
            row = [
                f"00Q{i:012d}",
                first if rng.random() > 0.02 else first.upper(),
                last,
                email,
                phone,
                company if not free or rng.random() < 0.6 else "",
                rng.choice(TITLES),
                rng.choice(SOURCES),
                rng.choice(STATUSES),
                rng.choice(cnames),
                f"https://www.{domain}" if rng.random() < 0.3 else "",
                rng.choice(INDUSTRIES) if rng.random() < 0.5 else "",
                str(rng.choice([10, 25, 50, 120, 250, 800, 2500, 12000])) if rng.random() < 0.4 else "",
                f"${rng.randint(1, 500) * 100_000:,}" if rng.random() < 0.3 else "",
                rng.choice(OWNERS),
                rng.choice(["0", "0", "0", "1"]),
                rng.choice(["Hot", "Warm", "Cold", ""]),
            ]
            if rng.random() < 0.0005:
                row = row[:-3]  # a truncated line: wrong number of fields
            w.writerow(row)


def changed_copy(path: Path, column: str) -> Path:
    """A copy of a generated file in which every row's ``column`` differs (Title: the next of
    TITLES, a fit input of the lead score; any other column: the value with a letter appended):
    imported after the original, every lead it holds is updated."""

    out = path.with_name(f"{path.stem}-{column.lower().replace(' ', '_')}.csv")
    if out.exists():
        return out
    with path.open(encoding="utf-8", newline="") as f, out.open("w", encoding="utf-8", newline="") as g:
        reader, writer = csv.reader(f), csv.writer(g)
        header = next(reader)
        writer.writerow(header)
        i = header.index(column)
        for row in reader:
            if len(row) > i and column == "Title":
                row[i] = TITLES[(TITLES.index(row[i]) + 1) % len(TITLES)] if row[i] in TITLES else TITLES[0]
            elif len(row) > i:
                row[i] += "a"
            writer.writerow(row)
    return out


class ProcessSampler(threading.Thread):
    """Samples this process and all its descendants (the validation workers are children of a
    fork server, so grandchildren) from /proc every 0.2 s: the peak of their summed resident
    memory, and the CPU time the descendants used while sampling ran (``getrusage`` cannot see
    workers that are not this process's own waited-for children)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self._first: dict[int, int] = {}  # pid -> CPU ticks when first seen
        self._last: dict[int, int] = {}
        self._stop_event = threading.Event()

    @staticmethod
    def _stat(pid: int) -> tuple[int, int] | None:
        """(parent pid, utime + stime ticks)."""

        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return int(fields[1]), int(fields[11]) + int(fields[12])

    @staticmethod
    def _rss_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _descendants(self) -> dict[int, int]:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = self._stat(int(entry))
                if st is not None:
                    stats[int(entry)] = st
        family = {os.getpid()}
        grew = True
        while grew:
            grew = False
            for pid, (ppid, _) in stats.items():
                if ppid in family and pid not in family:
                    family.add(pid)
                    grew = True
        family.discard(os.getpid())
        return {pid: stats[pid][1] for pid in family}

    def sample(self) -> None:
        kids = self._descendants()
        for pid, ticks in kids.items():
            self._first.setdefault(pid, ticks)
            self._last[pid] = ticks
        total = self._rss_kib(os.getpid()) + sum(self._rss_kib(pid) for pid in kids)
        self.peak_kib = max(self.peak_kib, total)

    def run(self) -> None:
        self.sample()
        while not self._stop_event.wait(0.2):
            self.sample()

    def stop(self) -> tuple[float, float]:
        """(peak MiB, descendants' CPU seconds)."""

        self._stop_event.set()
        self.join()
        cpu = sum(self._last[pid] - self._first[pid] for pid in self._last) / self.TICK
        return self.peak_kib / 1024, cpu


def maxrss_mib() -> tuple[float, float]:
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return self_kib / 1024, kids_kib / 1024


LEAD_SECONDARY_INDEXES = (
    "ix_leads_stage_id",
    "ix_leads_owner_id_id",
    "ix_leads_created_at_id",
    "ix_leads_updated_at_id",
    "ix_leads_last_name_id",
    "ix_leads_source_owner_created_id",
    "ix_leads_account_id",
    "ix_leads_merged_into_id",
)


def sqlite_floor(
    directory: Path, rows: int = 1_000_000, chunk: int = DEFAULT_CHUNK, *, bare: bool = False
) -> None:
    """What SQLite alone costs per imported lead on this schema: raw executemany of the two rows
    an import writes per lead (lead, first stage change) and its one audit entry per transaction,
    no Python work."""

    path = directory / "floor.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    rng = random.Random(1)
    ts = "2026-11-23 09:00:00.000000"
    lead_cols = (
        "first_name, last_name, email, phone, phone_raw, job_title, seniority, company, country, timezone, "
        "source, origin, account_id, stage, consent, unsubscribed, attributes, created_at, updated_at, "
        "stage_changed_at, version"
    )
    leads = [
        (
            rng.choice(FIRST),
            rng.choice(LAST),
            f"{rng.random():.12f}.{i}@{rng.choice(WORDS).lower()}{i % 5000}.com",
            "+14155550100",
            "(415) 555-0100",
            rng.choice(TITLES),
            "manager",
            "Acme Inc.",
            "US",
            "America/Los_Angeles",
            rng.choice(SOURCES),
            "marketing",
            rng.randint(1, 5000),
            "cold",
            "unknown",
            0,
            '{"Lead ID":"00Q1"}',
            ts,
            ts,
            ts,
            1,
        )
        for i in range(rows)
    ]
    raw = db.engine.raw_connection()
    cur = raw.cursor()
    if bare:  # what the seven secondary indexes on leads cost
        for index in LEAD_SECONDARY_INDEXES:
            cur.execute(f"DROP INDEX {index}")
    cur.executemany(
        "INSERT INTO accounts (name, name_key, created_at, updated_at, version) VALUES (?, ?, ?, ?, 1)",
        [(f"a{i}", f"a{i}", ts, ts) for i in range(5001)],
    )
    raw.commit()
    cur.execute("PRAGMA wal_autocheckpoint=16384")
    spent = {"leads": 0.0, "stage_changes": 0.0, "audit_log + commit": 0.0}
    first_id = 1
    for k in range(0, rows, chunk):
        part = leads[k : k + chunk]
        c0 = time.process_time()
        cur.execute("BEGIN IMMEDIATE")  # the engine's connections run in autocommit mode
        cur.executemany(f"INSERT INTO leads ({lead_cols}) VALUES ({', '.join('?' * 21)})", part)
        c1 = time.process_time()
        ids = range(first_id, first_id + len(part))
        first_id += len(part)
        cur.executemany(
            "INSERT INTO stage_changes (lead_id, to_stage, at, reason, evidence) VALUES (?, 'cold', ?, ?, ?)",
            [(i, ts, "import #1", '{"kind":"imported"}') for i in ids],
        )
        c2 = time.process_time()
        cur.execute(
            "INSERT INTO audit_log (at, actor_label, entity_type, entity_id, action, after, reason) "
            "VALUES (?, 'cli', 'leads', ?, 'import', ?, 'import #1')",
            (ts, ids[0], f'{{"import_id":1,"ids":[[{ids[0]},{ids[-1]}]],"lines":{list(ids)}}}'),
        )
        raw.commit()
        c3 = time.process_time()
        spent["leads"] += c1 - c0
        spent["stage_changes"] += c2 - c1
        spent["audit_log + commit"] += c3 - c2
    raw.close()
    db.dispose()
    total = sum(spent.values())
    parts = ", ".join(f"{name} {sec / rows * 1e6:.0f}" for name, sec in spent.items())
    print(
        f"SQLite floor ({rows:,} leads{', no secondary indexes on leads' if bare else ''}, "
        f"CPU us per lead): {parts}; total {total / rows * 1e6:.0f} us "
        f"= at most {rows / total:,.0f} leads/s for a single writer doing nothing else; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "leadflow-bench")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file in --dir)")
    ap.add_argument("--workers", type=int, default=None, help="validation processes (default: cores)")
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="rows per chunk (and write transaction)")
    ap.add_argument("--rerun", action="store_true", help="import the same file a second time")
    ap.add_argument(
        "--rerun-changed",
        metavar="COLUMN",
        help="then import a copy of the file in which every row's COLUMN differs (e.g. Title, a fit "
        "input of the lead score, or First Name, not one): every lead is updated",
    )
    ap.add_argument(
        "--without-fit-triggers",
        action="store_true",
        help="drop the fit_dirty triggers before the --rerun-changed import (what they cost it)",
    )
    ap.add_argument("--sqlite-floor", action="store_true", help="only time SQLite's own insert cost")
    ap.add_argument("--bare", action="store_true", help="--sqlite-floor without the secondary lead indexes")
    args = ap.parse_args()
    if args.sqlite_floor:
        args.dir.mkdir(parents=True, exist_ok=True)
        sqlite_floor(args.dir, min(args.rows, 1_000_000), bare=args.bare)
        return 0

    args.dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.dir / f"leads-{args.rows}-{args.seed}.csv"
    if not csv_path.exists():
        t = time.perf_counter()
        generate(csv_path, args.rows, args.seed)
        print(
            f"generated {csv_path} ({csv_path.stat().st_size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - t:.1f}s"
        )
    else:
        print(f"using {csv_path} ({csv_path.stat().st_size / 2**20:.0f} MiB)")

    url = args.db
    if url is None:
        db_path = args.dir / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db_path}"
    db = Database(url)
    upgrade(db.engine)
    with db.transaction() as s:
        if s.scalar(select(func.count()).select_from(Lead)):
            print("the database is not empty; give a fresh one", file=sys.stderr)
            return 2
        for name, email in (
            ("Alice Admin", "alice@bench.example"),
            ("Bob Seller", "bob@bench.example"),
            ("Carol Manager", "carol@bench.example"),
            ("Dan Rep", "dan@bench.example"),
        ):
            s.add(User(name=name, email=email, role="sales_rep"))

    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or done == total:
            last[0] = now
            print(f"  {done:>9,} / {total:,}", flush=True)

    files = [csv_path] * (2 if args.rerun else 1)
    if args.rerun_changed:
        files.append(changed_copy(csv_path, args.rerun_changed))
    peaks = []
    for run, path in enumerate(files):
        if args.without_fit_triggers and run == len(files) - 1 and args.rerun_changed:
            from leadflow.scoring.models import fit_dirty_drop_ddl

            with db.engine.begin() as conn:
                for sql in fit_dirty_drop_ddl(db.dialect):
                    conn.execute(text(sql))
        t = time.perf_counter()
        cpu_main = time.process_time()
        load = os.getloadavg()[0]
        sampler = ProcessSampler()
        sampler.start()
        result = run_import(
            db,
            path,
            mapping="salesforce",
            progress=progress,
            report_dir=args.dir,
            workers=args.workers,
            chunk_size=args.chunk,
        )
        elapsed = time.perf_counter() - t
        peak, cpu_workers = sampler.stop()
        peaks.append(peak)
        per_row = 1e6 / result.rows_total
        print(
            f"run {run + 1} ({path.name}): {result.rows_total:,} rows in {elapsed:.1f}s "
            f"= {result.rows_total / elapsed:,.0f} rows/s "
            f"(created {result.created:,}, updated {result.updated:,}, skipped {result.skipped:,}, "
            f"failed {result.failed:,}, warnings {result.warnings:,}, accounts {result.accounts_created:,})"
        )
        print(
            f"       CPU: this process {(time.process_time() - cpu_main) * per_row:.0f} us/row, "
            f"workers {cpu_workers * per_row:.0f} us/row; peak memory {peak:.0f} MiB "
            f"(this process + workers, sampled); load average before the run {load:.2f} "
            f"on {os.cpu_count()} cores"
        )
    self_mib, kids_mib = maxrss_mib()
    print(
        f"peak memory (sampled, this process + workers at the same moment): {max(peaks):.0f} MiB; "
        f"getrusage maxrss: self {self_mib:.0f} MiB, children {kids_mib:.0f} MiB"
    )
    with db.engine.connect() as conn:
        leads = conn.scalar(select(func.count()).select_from(Lead))
        accounts = conn.scalar(select(func.count()).select_from(Account))
        audits = conn.scalar(text("SELECT count(*) FROM audit_log"))
    print(f"database: {leads:,} leads, {accounts:,} accounts, {audits:,} audit entries ({db.dialect})")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
