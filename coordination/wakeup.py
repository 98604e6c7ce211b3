"""Waking waiting consumers (long polls, streams) the moment a message becomes receivable — never by polling.

A waiter subscribes to its agent's inbox, checks it, and sleeps until it is woken or until a time it knows of
(the end of its wait, a nack delay, a lease that runs out). Who wakes it:

- PostgreSQL: the trigger of migration 0005 sends ``NOTIFY brikk_inbox, '<recipient id>'`` when a row becomes
  queued (insert, nack, sweep, redrive), delivered at commit, so the send path makes no extra round trip. One
  listener thread per process LISTENs and wakes that recipient's waiters in this process, whichever event loop
  they wait on. After a lost connection it wakes everyone (a notification may have been missed) and listens
  again.
- Other databases (SQLite, the embedded defaults): the service functions ``announce()`` the recipient after
  their commit, in process.

Waiters hold no thread and no database connection while they sleep.
"""

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator

from django.db import connections, transaction

CHANNEL = "brikk_inbox"
# A waiter for every recipient (the push dispatcher, coordination/push.py): woken by every announcement.
ANY = "*"
logger = logging.getLogger("brikk.inbox")


class Waiter:
    """One waiting consumer: an event set from any thread through its own loop."""

    __slots__ = ("recipient", "loop", "event")

    def __init__(self, recipient: str, loop: asyncio.AbstractEventLoop):
        self.recipient, self.loop, self.event = recipient, loop, asyncio.Event()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits any more
            self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, timeout: float | None) -> bool:
        """True when woken, False when ``timeout`` seconds passed first."""
        try:
            if timeout is not None and timeout <= 0:
                return self.event.is_set()
            async with asyncio.timeout(timeout):
                await self.event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.event.clear()


class Hub:
    """The waiters of this process by recipient; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)

    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters[waiter.recipient].add(waiter)

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.recipient)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.recipient]

    def wake(self, recipient: str) -> None:
        with self._lock:
            waiters = [*self._waiters.get(recipient, ()), *self._waiters.get(ANY, ())]
        for waiter in waiters:
            waiter.wake()

    def wake_all(self) -> None:
        with self._lock:
            waiters = [waiter for group in self._waiters.values() for waiter in group]
        for waiter in waiters:
            waiter.wake()

    def count(self) -> int:
        with self._lock:
            return sum(len(group) for group in self._waiters.values())


hub = Hub()


def notifies_itself() -> bool:
    """True where the database wakes waiters (PostgreSQL's trigger), so nothing needs announcing."""
    return connections["default"].vendor == "postgresql"


# Called with the recipient's id after each in-process announcement commits (the in-process push dispatcher
# starts itself from one: coordination/push.py); registered once at start.
announced_hooks: list = []


def announce(recipient_id) -> None:
    """After the current transaction commits, wake this process's waiters for ``recipient_id``. On PostgreSQL
    the trigger does it for every process, so this does nothing."""
    if recipient_id is None or notifies_itself():
        return
    recipient = str(recipient_id)
    transaction.on_commit(lambda: _announced(recipient))


def _announced(recipient: str) -> None:
    hub.wake(recipient)
    for hook in announced_hooks:
        hook(recipient)


def announce_everywhere(recipient_id) -> None:
    """Like announce(), for a change the trigger does not see (an endpoint enabled for an agent whose messages
    wait): on PostgreSQL an explicit NOTIFY, delivered at commit to every process's listener."""
    if recipient_id is None:
        return
    if notifies_itself():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(recipient_id)])
    else:
        announce(recipient_id)


def announce_all() -> None:
    """Like announce(), for changes that touch many recipients at once (the sweep)."""
    if not notifies_itself():
        transaction.on_commit(hub.wake_all)


@contextlib.asynccontextmanager
async def subscription(recipient_id) -> AsyncIterator[Waiter]:
    """Subscribe before checking the inbox, so that nothing committed in between is missed. ``ANY``: woken
    whenever any recipient is."""
    if notifies_itself():
        listener.ensure_running()
    waiter = Waiter(str(recipient_id), asyncio.get_running_loop())
    hub.add(waiter)
    try:
        yield waiter
    finally:
        hub.remove(waiter)


class Listener:
    """One thread per process: LISTEN brikk_inbox on a connection of its own, and wake the recipients named."""

    RECONNECT_MAX_SECONDS = 5.0
    # How often the thread looks up from its socket to see whether it should stop (not a look at the table).
    STOP_CHECK_SECONDS = 1.0

    def __init__(self):
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.listening = threading.Event()

    def ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="brikk-inbox-listener", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop listening and close the connection (tests, before their database is dropped)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join(self.STOP_CHECK_SECONDS * 5)

    def _conninfo(self) -> dict:
        settings = connections["default"].settings_dict
        params = {
            "dbname": settings["NAME"],
            "user": settings.get("USER") or None,
            "password": settings.get("PASSWORD") or None,
            "host": settings.get("HOST") or None,
            "port": settings.get("PORT") or None,
            "connect_timeout": settings.get("OPTIONS", {}).get("connect_timeout", 3),
            "application_name": "brikk-inbox-listener",
        }
        return {name: value for name, value in params.items() if value is not None}

    def _run(self) -> None:
        import psycopg  # only where PostgreSQL is the database

        delay = 0.2
        while not self._stopping.is_set():
            try:
                with psycopg.connect(**self._conninfo(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    hub.wake_all()  # anything committed while nobody listened is looked at again
                    delay = 0.2
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=self.STOP_CHECK_SECONDS):
                            hub.wake(notice.payload)
            except Exception as error:  # noqa: BLE001 - any failure: log, wait, listen again
                logger.warning("inbox listener lost its connection (%s); reconnecting", error.__class__.__name__)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.RECONNECT_MAX_SECONDS)
            finally:
                self.listening.clear()


listener = Listener()
