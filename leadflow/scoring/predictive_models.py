"""Predictive scoring tables: trained model versions (metrics and the serialized estimator)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class PredictiveModel(Base):
    """One trained predictive model; at most one is active (it answers predictions)."""

    __tablename__ = "predictive_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    target: Mapped[str] = mapped_column(String(20))  # sql | opportunity | won
    kind: Mapped[str] = mapped_column(String(40))  # the estimator family, e.g. logistic
    active: Mapped[bool] = mapped_column(default=False, index=True)
    # Training window and options: cutoff, split_at, horizon_days, test_fraction, rule model version.
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # The feature layout the estimator expects (names, vocabularies, means for explanations).
    features: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    estimator: Mapped[bytes] = mapped_column(LargeBinary)  # joblib bytes
    library_version: Mapped[str] = mapped_column(String(40))  # scikit-learn's, checked on load
    n_train: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer)
    positives: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
