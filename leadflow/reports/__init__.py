"""Funnel, velocity, forecast, attribution, leaderboard and loss-reason reports (a registry)."""
