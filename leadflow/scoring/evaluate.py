"""The evaluation report: contenders compared on the same hold-out (ROC AUC, PR AUC, top-decile
lift, Brier score, calibration curve), as JSON and as PNG plots (matplotlib, no display)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from leadflow.core import predictive as core

FloatArray = npt.NDArray[np.float64]
LABELS = {
    "rule_score": "Rule score (total / scale)",
    "naive_bayes": "Naive-Bayes frequencies (Odoo-style)",
    "trained_model": "Trained model (calibrated)",
}
_POINTS = 101  # curve points kept in the JSON


def _thin(x: FloatArray, y: FloatArray) -> tuple[list[float], list[float]]:
    if len(x) > _POINTS:
        idx = np.unique(np.linspace(0, len(x) - 1, _POINTS).round().astype(int))
        x, y = x[idx], y[idx]
    return core.sequence_of(x.tolist()), core.sequence_of(y.tolist())


def metrics(y: npt.NDArray[np.bool_], p: FloatArray) -> dict[str, Any]:
    """One contender's figures on the hold-out (``p`` in 0..1)."""

    fpr, tpr, _ = roc_curve(y, p)
    prec, rec, _ = precision_recall_curve(y, p)
    bins = min(10, max(2, int(y.sum()) // 5))
    true, pred = calibration_curve(y, np.clip(p, 0.0, 1.0), n_bins=bins, strategy="quantile")
    roc_x, roc_y = _thin(fpr, tpr)
    pr_x, pr_y = _thin(rec[::-1], prec[::-1])
    return {
        "roc_auc": round(core.roc_auc(y, p), 4),
        "pr_auc": round(float(average_precision_score(y, p)), 4),
        "top_decile_lift": round(core.top_fraction_lift(y, p, 0.1), 3),
        "brier": round(core.brier(y, np.clip(p, 0.0, 1.0)), 4),
        "curves": {
            "roc": {"fpr": roc_x, "tpr": roc_y},
            "pr": {"recall": pr_x, "precision": pr_y},
            "calibration": {
                "predicted": core.sequence_of(pred.tolist()),
                "observed": core.sequence_of(true.tolist()),
            },
        },
    }


def report(y: npt.NDArray[np.bool_], scores: Mapping[str, FloatArray]) -> dict[str, Any]:
    return {
        "holdout": {"leads": len(y), "positive": int(y.sum()), "base_rate": round(float(y.mean()), 4)},
        "models": {name: metrics(y, p) for name, p in scores.items()},
    }


def summary(rep: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The figures without the curves."""

    return {name: {k: v for k, v in m.items() if k != "curves"} for name, m in rep.get("models", {}).items()}


def write(rep: Mapping[str, Any], out: Path) -> list[Path]:
    """report.json plus roc.png, pr.png, calibration.png and lift.png in ``out``."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json"]
    files[0].write_text(json.dumps(rep, indent=2), encoding="utf-8")
    models: Mapping[str, Any] = rep["models"]
    base = rep["holdout"]["base_rate"]

    def figure(name: str, title: str, xlabel: str, ylabel: str, draw: Any) -> None:
        fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
        draw(ax)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        files.append(path)

    def roc(ax: Any) -> None:
        for k, m in models.items():
            c = m["curves"]["roc"]
            ax.plot(c["fpr"], c["tpr"], label=f"{LABELS.get(k, k)} (AUC {m['roc_auc']:.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")

    def pr(ax: Any) -> None:
        for k, m in models.items():
            c = m["curves"]["pr"]
            ax.plot(c["recall"], c["precision"], label=f"{LABELS.get(k, k)} (AP {m['pr_auc']:.3f})")
        ax.axhline(base, color="k", ls="--", lw=0.8, label=f"base rate {base:.2f}")

    def cal(ax: Any) -> None:
        for k, m in models.items():
            c = m["curves"]["calibration"]
            ax.plot(
                c["predicted"],
                c["observed"],
                marker="o",
                label=f"{LABELS.get(k, k)} (Brier {m['brier']:.3f})",
            )
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")

    def lift(ax: Any) -> None:
        names = list(models)
        ax.bar(
            [LABELS.get(k, k).split(" (")[0] for k in names], [models[k]["top_decile_lift"] for k in names]
        )
        ax.axhline(1.0, color="k", ls="--", lw=0.8, label="no lift")
        ax.tick_params(axis="x", labelsize=7)

    figure("roc", "ROC on the hold-out", "false positive rate", "true positive rate", roc)
    figure("pr", "Precision-recall on the hold-out", "recall", "precision", pr)
    figure("calibration", "Calibration on the hold-out", "predicted probability", "observed rate", cal)
    figure("lift", "Top-decile lift on the hold-out", "", "lift", lift)
    return files
