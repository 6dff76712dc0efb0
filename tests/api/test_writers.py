"""ConfigWriter and TaskWriter over a fake producer: what each producer error answers (503), lazy start."""

from __future__ import annotations

import asyncio
import threading

import pytest

from api.errors import Unavailable
from api.tasks import TaskWriter
from api.writer import ConfigWriter, Written
from hookline.records import DeliveryTask
from hookline.settings import load_settings
from hookline.topics import CONFIG
from tests.hookline.test_producer import REFUSED, FakeProducer
from tests.logrecords import delivery_task


def _task() -> DeliveryTask:
    return delivery_task(trigger="test")


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (FakeProducer(), None),
        (FakeProducer(REFUSED), "the config topic refused the write (MSG_SIZE_TOO_LARGE)"),
        (FakeProducer(queue_full=1), "too many writes in flight; retry shortly"),
        (FakeProducer(hold=True), "the broker did not acknowledge the write in time"),
    ],
)
def test_config_writer_answers(fake: FakeProducer, message: str | None) -> None:
    writer = ConfigWriter(load_settings({}), fake, ack_timeout=0.1).start()
    try:
        if message is None:
            assert asyncio.run(writer.delete("wh")) == Written(3, 0)
            assert fake.produced == [(load_settings({}).topic(CONFIG), b"wh", None)]
        else:
            with pytest.raises(Unavailable) as caught:
                asyncio.run(writer.delete("wh"))
            assert caught.value.message == message
    finally:
        writer.close(0.1)


def test_config_writer_not_started_or_closed_is_unavailable() -> None:
    writer = ConfigWriter(load_settings({}), FakeProducer())
    with pytest.raises(Unavailable, match="the API is not started"):
        asyncio.run(writer.delete("wh"))
    writer.start().close(0.1)
    with pytest.raises(Unavailable, match="the API is not started"):
        asyncio.run(writer.delete("wh"))


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (FakeProducer(REFUSED), "the delivery topic refused the task (MSG_SIZE_TOO_LARGE)"),
        (FakeProducer(queue_full=1), "too many sends in flight; retry shortly"),
        (FakeProducer(hold=True), "the broker did not acknowledge the task in time"),
    ],
)
def test_task_writer_answers(fake: FakeProducer, message: str) -> None:
    writer = TaskWriter(load_settings({}), fake, ack_timeout=0.1)
    try:
        with pytest.raises(Unavailable) as caught:
            asyncio.run(writer.send(_task()))
        assert caught.value.message == message
    finally:
        writer.close(0.1)


def test_task_writer_starts_on_its_first_send_and_refuses_once_closed() -> None:
    fake = FakeProducer()
    writer = TaskWriter(load_settings({}), fake)
    assert not _threads("task-writer")
    try:
        assert asyncio.run(writer.send(_task())) == Written(3, 0)
        assert len(_threads("task-writer")) == 1
        assert [(t, k) for t, k, _v in fake.produced] == [(writer.topic, b"wh")]
    finally:
        writer.close(0.1)
    assert not _threads("task-writer")
    with pytest.raises(Unavailable, match="the API is stopping"):
        asyncio.run(writer.send(_task()))
    never_started = TaskWriter(load_settings({}), FakeProducer())
    never_started.close()
    with pytest.raises(Unavailable, match="the API is stopping"):
        asyncio.run(never_started.send(_task()))
