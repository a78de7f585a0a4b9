"""A consumer process for the crash tests: ``python -m tests.messaging._worker KIND URL
TOPIC OUTFILE CONSUMER``. It appends each handled message's key to OUTFILE (one
``os.write`` per line) before the ack, so a kill -9 can land between effect and ack."""

from __future__ import annotations

import asyncio
import os
import sys

from buttress.messaging import Consumer, Message, Transport


async def main(kind: str, url: str, topic: str, outfile: str, consumer: str) -> None:
    transport: Transport
    if kind == "redis":
        import redis.asyncio as redis

        from buttress.messaging import RedisStreamsTransport

        transport = RedisStreamsTransport(redis.Redis.from_url(url))
    else:
        from buttress.messaging.nats import NatsTransport

        transport = await NatsTransport.connect(url)
    fd = os.open(outfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def handle(msg: Message) -> None:
        await asyncio.sleep(0.002)
        os.write(fd, f"{msg.key}\n".encode())

    await Consumer(
        transport, topic, handle, group="workers", consumer=consumer, concurrency=8,
        prefetch=16, lease=1.0, fetch_wait=0.5,
    ).run()  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
