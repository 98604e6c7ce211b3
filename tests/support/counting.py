"""Count what one request costs: Redis round trips and database transactions, against the real services."""

import contextlib
import re
from dataclasses import dataclass, field

import pytest
from django.db import connection
from redis.connection import AbstractConnection


@dataclass
class RedisTrips:
    """Round trips to Redis (a pipeline is one) and the commands each carried."""

    trips: list[list[str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.trips)


@contextlib.contextmanager
def redis_round_trips():
    """Every socket write redis-py makes is one round trip; the real commands still reach Redis."""
    seen = RedisTrips()
    send_packed = AbstractConnection.send_packed_command
    send_command = AbstractConnection.send_command
    pack_commands = AbstractConnection.pack_commands
    names: list[str] = []

    def _name(args) -> str:
        return (args[0].decode() if isinstance(args[0], bytes) else str(args[0])).upper()

    def counting_send(self, command, check_health=True):
        seen.trips.append(list(names) or ["?"])
        names.clear()
        return send_packed(self, command, check_health=check_health)

    def naming_send(self, *args, **kwargs):
        names.append(_name(args))
        return send_command(self, *args, **kwargs)

    def naming_pack_many(self, commands):
        names.extend(_name(args) for args in commands)
        return pack_commands(self, commands)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", counting_send)
        patch.setattr(AbstractConnection, "send_command", naming_send)
        patch.setattr(AbstractConnection, "pack_commands", naming_pack_many)
        yield seen


@dataclass
class Transactions:
    """Committed atomic blocks (the SQL run inside each) and SQL run in autocommit, outside any block."""

    committed: list[list[str]] = field(default_factory=list)
    autocommit: list[str] = field(default_factory=list)
    _current: list[str] = field(default_factory=list)


@contextlib.contextmanager
def database_transactions():
    seen = Transactions()
    commit = connection._commit

    def run(execute, sql, params, many, context):
        if connection.in_atomic_block:
            seen._current.append(sql)
        else:
            seen.autocommit.append(sql)
        return execute(sql, params, many, context)

    def counting_commit():
        seen.committed.append(seen._current[:])
        seen._current.clear()
        return commit()

    with pytest.MonkeyPatch.context() as patch, connection.execute_wrapper(run):
        patch.setattr(connection, "_commit", counting_commit)
        yield seen


def inserted_tables(sql: str) -> list[str]:
    """The tables one statement inserts into, in order (a WITH statement may insert into several)."""
    return re.findall(r'INSERT INTO "(\w+)"', sql)
