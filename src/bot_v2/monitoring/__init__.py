"""Metrics, health, events and secret masking."""
