"""The ingest core: the one way data gets in. Knows nothing of HTTP or of any dialect."""
