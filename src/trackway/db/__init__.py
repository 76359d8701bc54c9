"""Storage: tables, engines, the SQL unit of work and the read-side queries."""
