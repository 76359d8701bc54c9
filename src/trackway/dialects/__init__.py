"""Thin dialects: each turns one tracker's wire format into an ``IngestBatch`` and back."""
