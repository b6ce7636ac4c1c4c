"""Opportunities and pipelines: convert a prospect into a deal, move it to close, forecast."""
