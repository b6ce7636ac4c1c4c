"""Predictive scoring benchmark: reading the history, training, evaluating and suggesting points.

    .venv/bin/python bench/predictive.py                       # 20k synthetic leads, SQLite
    .venv/bin/python bench/predictive.py --leads 100000
    .venv/bin/python bench/predictive.py --db postgresql+psycopg://user:pw@127.0.0.1/bench

A synthetic history (leadflow.scoring.synthetic: accounts, leads, engagement events, stage history
with a known latent propensity) is written into a fresh, migrated database; then each phase is
timed (wall and this process's CPU seconds: on a shared machine the CPU figure is the one that
compares) and the hold-out figures are printed. PostgreSQL: the database must exist and be empty.
Results are documented in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.scoring import evaluate, predictive, suggest, synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    url = args.db or f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'bench.db')}"
    db = Database(url)
    upgrade(db.engine)

    t = time.perf_counter()
    with db.transaction() as s:
        summary = synthetic.generate(s, leads=args.leads, seed=args.seed)
    print(
        f"generated {summary.leads:,} leads, {summary.activities:,} events, {summary.converted:,} SQLs "
        f"in {time.perf_counter() - t:.1f}s ({db.dialect})"
    )
    cpu0 = time.process_time()
    params = predictive.Params()
    with db.transaction() as s:
        t, c = time.perf_counter(), time.process_time()
        prep = predictive.prepare(s, params)
        t_prep, c_prep = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        fitted = predictive.fit(prep)
        t_fit, c_fit = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        report = evaluate.report(prep.label[prep.split.test], predictive.holdout_scores(prep, fitted))
        t_eval = time.perf_counter() - t
    print(
        f"read + label + rule score at each moment: {t_prep:.1f}s (CPU {c_prep:.1f}s); "
        f"fit: {t_fit:.1f}s (CPU {c_fit:.1f}s); "
        f"hold-out scores + metrics: {t_eval:.1f}s "
        f"(train {len(prep.split.train):,}, test {len(prep.split.test):,})"
    )
    for name, m in evaluate.summary(report).items():
        print(
            f"  {name:14} ROC AUC {m['roc_auc']:.3f}  PR AUC {m['pr_auc']:.3f}  "
            f"lift {m['top_decile_lift']:.2f}x  Brier {m['brier']:.3f}"
        )
    with db.transaction() as s:
        t = time.perf_counter()
        train_row = predictive.train(s, SYSTEM, params)
        t_train = time.perf_counter() - t
        lead_id = int(prep.leads.ids[prep.split.test][0])
        t = time.perf_counter()
        for _ in range(20):
            predictive.predict_lead(s, SYSTEM, lead_id)
        t_pred = (time.perf_counter() - t) / 20
    print(
        f"train (end to end, stored as v{train_row.version}): {t_train:.1f}s; "
        f"one prediction: {t_pred * 1000:.1f} ms"
    )
    with db.transaction() as s:
        t = time.perf_counter()
        sugg = suggest.suggest(s, SYSTEM, params)
        t_sugg = time.perf_counter() - t
    print(
        f"suggest: {t_sugg:.1f}s; rule score hold-out ROC AUC {sugg.holdout_auc_now:.3f} -> "
        f"{sugg.holdout_auc_suggested:.3f}"
    )
    print(f"CPU seconds after generation: {time.process_time() - cpu0:.1f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
