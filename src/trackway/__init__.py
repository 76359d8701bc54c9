"""Trackway: a customer data platform server speaking four trackers' wire dialects."""

__version__ = "0.1.0"
