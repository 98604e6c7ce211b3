import asyncio
import signal

from django.core.management.base import BaseCommand

from coordination import push


class Command(BaseCommand):
    help = (
        "Push messages to their agents' enabled endpoints (signed webhooks; coordination/push.py) until "
        "SIGTERM or SIGINT. Several may run at once: each message is leased by one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", default=None, help="How attempts name this dispatcher (default: the host name).")

    def handle(self, *args, **options):
        asyncio.run(self._run(options["name"]))

    async def _run(self, name):
        dispatcher = push.Dispatcher(host=name)
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, dispatcher.stop)
        self.stdout.write("push dispatcher ready", ending="\n")
        self.stdout.flush()
        await dispatcher.run()
        self.stdout.write(f"push dispatcher stopped after {dispatcher.delivered} deliveries")
