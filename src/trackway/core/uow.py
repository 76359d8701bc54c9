"""What the core needs from storage: a transaction to write in, a connection to read from.

The core never opens an engine. It is handed a ``UnitOfWork`` and runs each batch inside
one ``transaction()``; a batched writer can stand behind the same interface later.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection


class UnitOfWork(Protocol):
    #: "sqlite" or "postgresql": a few statements (upserts, row locks) differ between them.
    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection inside one transaction, committed when the block exits cleanly."""
        ...

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads only; nothing written through it is kept."""
        ...
