"""A real local SMTP server (aiosmtpd) for the cadence tests, and settings pointing at it."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from leadflow.config import get_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)
    # When set, the server takes the message and then stalls before answering DATA (a worker
    # killed at that moment has handed over the message without learning it).
    stall_seconds: float = 0.0
    refuse: bool = False

    def to(self, addr: str) -> list[Message]:
        return [m for m in self.messages if addr in str(m["To"])]


class _Handler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.inbox.refuse:
            return "550 mailbox unavailable"
        self.inbox.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.inbox.received.set()
        if self.inbox.stall_seconds:
            await asyncio.sleep(self.inbox.stall_seconds)
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(_Handler(inbox), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        inbox.stall_seconds = 0
        controller.stop()


@contextmanager
def smtp_inbox(**extra_env: str) -> Iterator[Inbox]:
    """A local SMTP server with Leadflow's settings pointing at it (and ``extra_env``) for the
    duration; the previous environment and settings come back afterwards."""

    with smtp_server() as (box, port):
        env = {
            "LEADFLOW_SMTP_HOST": "127.0.0.1",
            "LEADFLOW_SMTP_PORT": str(port),
            "LEADFLOW_SECRET_KEY": "test-secret",
            "LEADFLOW_PUBLIC_URL": "https://crm.example.com",
            **extra_env,
        }
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        get_settings.cache_clear()
        try:
            yield box
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            get_settings.cache_clear()
