"""Leadflow: lead -> prospect -> opportunity, every score explained, every stage change justified."""

__version__ = "0.1.0"
