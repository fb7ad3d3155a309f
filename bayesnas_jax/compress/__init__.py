"""Structured compression with the HARD prior over weight groups (thesis App. A)."""
