"""Leaderboard: metrics, the grid runner, results and reports."""
