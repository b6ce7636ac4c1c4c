"""Realistic demo data: users, accounts, leads in every stage with evidenced histories,
engagement activities and the audit trail (``load_demo``)."""

from leadflow.demo.data import DEMO_PASSWORD
from leadflow.demo.load import DemoError, DemoSummary, load_demo

__all__ = ["DEMO_PASSWORD", "DemoError", "DemoSummary", "load_demo"]
