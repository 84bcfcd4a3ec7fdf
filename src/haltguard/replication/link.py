"""The venue process's one NATS connection, on an event loop thread of its own.

The venue thread never runs asyncio: it hands a coroutine to :meth:`StreamLink.submit` and
waits on the returned :class:`concurrent.futures.Future` (a batch's publish acknowledgement,
a lease renewal). Everything JetStream-specific is here: the journal stream (file storage,
``replicas`` copies), the lease bucket, publishing with the expected last sequence, reading
the stream's end, and a push subscription that hands messages to a thread-safe queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from haltguard.replication.errors import (
    FencedError,
    PublishFailedError,
    ReplicationConfigError,
    ReplicationError,
)
from haltguard.replication.models import (
    HEADER_EXPECTED_LAST_SEQUENCE,
    HEADER_FIRST_SEQ,
    HEADER_LAST_SEQ,
    LEASE_KEY,
    WRONG_LAST_SEQUENCE_CODES,
    LeaseRecord,
    ReplicationSettings,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 0.5
CALL_TIMEOUT_S = 10.0
PUBLISH_TRY_S = 1.0  # one attempt's wait for the stream's acknowledgement
PUBLISH_RETRY_WAIT_S = 0.05
HEADER_MSG_ID = "Nats-Msg-Id"
JETSTREAM_READY_S_MAX = 15.0
DUPLICATE_WINDOW_S = 120.0  # how long JetStream remembers message ids (repeats)
SUBSCRIPTION_PENDING_MSGS_MAX = 20_000
_LEASE_DECODER = msgspec.json.Decoder(LeaseRecord)


class StreamLink:
    """A NATS connection with JetStream for one venue node (primary or standby)."""

    def __init__(self, settings: ReplicationSettings, nats_url: str, *, name: str) -> None:
        self.settings = settings
        self.nats_url = nats_url
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nats-link",
                                        daemon=True)
        self._thread.start()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None

    # -- running coroutines from other threads ---------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        return self.submit(coro).result(timeout_s)

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "connect() first"
        return self._js

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "connect() first"
        return self._kv

    # -- connecting ------------------------------------------------------------------------

    def connect(self) -> StreamLink:
        """Connect, then create (or check) the journal stream and the lease bucket. A NATS
        that cannot be reached, or a stream it cannot hold, is a ReplicationConfigError."""
        self.call(self._connect(), CONNECT_TIMEOUT_S * 3 + JETSTREAM_READY_S_MAX + CALL_TIMEOUT_S)
        return self

    async def _connect(self) -> None:
        try:
            self._nc = await asyncio.wait_for(nats.connect(
                servers=self.nats_url.split(","), name=self.name,
                connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=_quiet,
            ), CONNECT_TIMEOUT_S * 3)
        except Exception as exc:
            raise ReplicationConfigError(
                f"cannot reach NATS at {self.nats_url} ({type(exc).__name__}: {exc})",
                message_ja=f"NATS（{self.nats_url}）に接続できません",
                next_step="start nats-server with JetStream there, or fix continuity.nats_url "
                "(empty: serve starts a local one)",
            ) from None
        self._js = self._nc.jetstream(timeout=self.settings.publish_timeout_ms / 1000)
        await self._ensure_stream()
        ttl_s = self.settings.lease_ttl_ms / 1000
        try:
            self._kv = await self._js.create_key_value(
                bucket=self.settings.lease_bucket, history=1,
                replicas=self.settings.replicas, ttl=max(ttl_s * 4, 2.0),
                storage=api.StorageType.FILE,
            )
        except APIError as exc:
            self._kv = await self._bucket_or_raise(exc)
        # The lease is read and written with a third of its TTL to answer: a request lost to a
        # dead NATS node must not make a standby wait longer than the lease itself.
        lease_js = self._nc.jetstream(timeout=max(0.1, ttl_s / 3))
        with contextlib.suppress(Exception):
            self._kv = await lease_js.key_value(self.settings.lease_bucket)

    async def prefer_leader(self, server_name: str, wait_s: float = 10.0) -> bool:
        """Ask JetStream to move the leadership of the journal stream and the lease bucket
        to ``server_name`` (a step-down with a preferred placement); True once both are
        there. Losing the NATS node that leads a stream costs a raft election (4 to 9 s in
        nats-server); keeping the leaders away from the primary's own node spares a site
        loss that wait."""
        assert self._nc is not None
        streams = [self.settings.stream, f"KV_{self.settings.lease_bucket}"]
        deadline = self.loop.time() + wait_s
        for stream in streams:
            while self.loop.time() < deadline:
                info = await self.js.stream_info(stream)
                if info.cluster is not None and info.cluster.leader == server_name:
                    break
                with contextlib.suppress(Exception):
                    await self._nc.request(
                        f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}",
                        json.dumps({"placement": {"preferred": server_name}}).encode(),
                        timeout=2.0)
                await asyncio.sleep(0.2)
            else:
                return False
        return True

    async def _wait_for_jetstream(self) -> None:
        """A cluster that was just started elects its JetStream leader first; until then
        its API does not answer. Wait up to ``JETSTREAM_READY_S_MAX`` for it."""
        deadline = self.loop.time() + JETSTREAM_READY_S_MAX
        assert self._nc is not None
        probe = self._nc.jetstream(timeout=0.5)
        while True:
            try:
                await probe.account_info()
                return
            except Exception as exc:
                if self.loop.time() >= deadline:
                    raise ReplicationConfigError(
                        f"NATS at {self.nats_url} answers, but its JetStream does not "
                        f"({type(exc).__name__}: {exc})",
                        message_ja=f"NATS（{self.nats_url}）の JetStream が応答しません",
                        next_step="start nats-server with --jetstream (a cluster needs a "
                        "majority of its servers up)",
                    ) from None
                await asyncio.sleep(0.2)

    async def _ensure_stream(self) -> None:
        await self._wait_for_jetstream()
        wanted = self.settings.replicas
        config = api.StreamConfig(
            name=self.settings.stream, subjects=[self.settings.subject],
            storage=api.StorageType.FILE, num_replicas=wanted,
            retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.OLD,
            max_msg_size=-1, duplicate_window=DUPLICATE_WINDOW_S,
        )
        try:
            await self.js.add_stream(config)
        except APIError as exc:
            if exc.err_code != 10058:  # the name is in use: check that stream below
                raise _cannot_hold(self.settings, exc) from None
        try:
            info = await self.js.stream_info(self.settings.stream)
        except APIError as exc:
            raise _cannot_hold(self.settings, exc) from None
        have = info.config.num_replicas or 1
        if have != wanted:
            raise ReplicationConfigError(
                f"the stream {self.settings.stream} exists with {have} replicas, the settings "
                f"ask for {wanted}",
                message_ja=f"ストリーム {self.settings.stream} の複製数 {have} が設定 {wanted} と"
                "異なります",
                next_step="set continuity.replicas to the stream's, or change the stream "
                "with the nats CLI",
            )

    async def _bucket_or_raise(self, exc: APIError) -> KeyValue:
        try:
            return await self.js.key_value(self.settings.lease_bucket)
        except Exception:
            raise _cannot_hold(self.settings, exc) from None

    def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            with contextlib.suppress(Exception):  # closing a dead link: nothing to save
                self.call(nc.close(), 3.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(3.0)

    # -- the journal stream ----------------------------------------------------------------

    async def publish(self, payload: bytes, headers: dict[str, str], expected_last: int) -> int:
        """Append one message if the stream's last sequence is still ``expected_last``; its
        stream sequence. FencedError when another writer extended the stream first.

        A publish that gets no answer (the server it went to died, the stream is electing a
        new leader) is sent again, for up to ``publish_timeout_ms`` in all, with the same
        message id: JetStream answers a repeat of a message it already stored with that
        message's sequence instead of storing it twice (or failing the expected-sequence
        check on its own earlier copy).
        """
        headers[HEADER_EXPECTED_LAST_SEQUENCE] = str(expected_last)
        headers.setdefault(HEADER_MSG_ID, f"{self.name}/{expected_last}")
        deadline = self.loop.time() + self.settings.publish_timeout_ms / 1000
        while True:
            left_s = deadline - self.loop.time()
            try:
                ack = await self.js.publish(self.settings.subject, payload, headers=headers,
                                            timeout=max(0.05, min(PUBLISH_TRY_S, left_s)))
            except APIError as exc:
                if exc.err_code in WRONG_LAST_SEQUENCE_CODES:
                    raise _fenced(expected_last, exc) from None
                if not _worth_again(exc) or left_s <= PUBLISH_TRY_S:
                    raise _publish_failed(self.settings, exc) from None
            except Exception as exc:  # no answer: try again until the deadline
                if self.loop.time() >= deadline:
                    raise _publish_failed(self.settings, exc) from None
            else:
                return int(ack.seq)
            await asyncio.sleep(PUBLISH_RETRY_WAIT_S)

    async def stream_end(self) -> tuple[int, int, int]:
        """``(first message seq, last message seq, last command seq)`` of the stream."""
        info = await self.js.stream_info(self.settings.stream)
        state = info.state
        last_command = 0
        if state.messages:
            try:
                message = await self.js.get_msg(self.settings.stream, state.last_seq)
            except NotFoundError:
                message = None
            if message is not None and message.headers:
                last_command = int(message.headers.get(HEADER_LAST_SEQ, "0"))
        return state.first_seq, state.last_seq, last_command

    async def message_at(self, stream_seq: int) -> tuple[dict[str, str], bytes] | None:
        """The headers and data of one stream message (None when the stream lost it)."""
        try:
            message = await self.js.get_msg(self.settings.stream, stream_seq)
        except NotFoundError:
            return None
        return dict(message.headers or {}), message.data or b""

    async def find_batch(self, command_seq: int) -> tuple[dict[str, str], bytes] | None:
        """The batch message holding ``command_seq`` (a binary search over the stream's
        messages, whose command seqs only grow); None when the stream does not hold it."""
        first, last, last_command = await self.stream_end()
        if last == 0 or command_seq > last_command:
            return None
        low, high = first, last
        while low <= high:
            middle = (low + high) // 2
            found = await self.message_at(middle)
            if found is None:
                low = middle + 1
                continue
            headers, data = found
            first_seq = int(headers.get(HEADER_FIRST_SEQ, "0"))
            last_seq = int(headers.get(HEADER_LAST_SEQ, "0"))
            if last_seq < command_seq:
                low = middle + 1
            elif first_seq > command_seq:
                high = middle - 1
            else:
                return headers, data
        return None

    async def subscribe_from(self, stream_seq: int, into: queue.Queue[Msg]) -> Any:
        """Push every message from ``stream_seq`` on into ``into`` (an ordered consumer:
        the client restarts it at the right place after a gap or a reconnect)."""

        async def deliver(message: Msg) -> None:
            into.put(message)

        return await self.js.subscribe(
            self.settings.subject, cb=deliver, ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=max(1, stream_seq)),
            pending_msgs_limit=SUBSCRIPTION_PENDING_MSGS_MAX,
            idle_heartbeat=1.0, stream=self.settings.stream,
        )

    # -- the lease -------------------------------------------------------------------------

    async def read_lease(self) -> tuple[LeaseRecord | None, int]:
        """The lease as stored and its revision; (None, revision or 0) when nobody holds it."""
        try:
            entry = await self.kv.get(LEASE_KEY)
        except KeyNotFoundError as exc:
            revision = getattr(getattr(exc, "entry", None), "revision", 0) or 0
            return None, int(revision)
        if not entry.value:
            return None, int(entry.revision or 0)
        return _LEASE_DECODER.decode(entry.value), int(entry.revision or 0)

    async def write_lease(self, record: LeaseRecord, revision: int) -> int | None:
        """Compare-and-set: store ``record`` if the lease is still at ``revision`` (0: absent);
        the new revision, or None when someone else changed it first."""
        value = msgspec.json.encode(record)
        try:
            if revision == 0:
                return int(await self.kv.create(LEASE_KEY, value))
            return int(await self.kv.update(LEASE_KEY, value, last=revision))
        except KeyWrongLastSequenceError:
            return None


async def _quiet(exc: Exception) -> None:
    """Connection trouble is logged once per kind by the caller's outcome, not per retry."""
    log.debug("nats: %s", exc)


def _fenced(expected_last: int, exc: APIError) -> FencedError:
    return FencedError(
        f"the stream refused this venue's batch: its last message is no longer "
        f"{expected_last} ({exc.description}); another venue holds the lease",
        message_ja="ストリームがこのベニューのバッチを拒否しました（別のベニューが主系です）",
        next_step="nothing to do: this venue stops acknowledging and becomes a standby",
    )


def _worth_again(exc: APIError) -> bool:
    """JetStream answers 503 while a stream has no leader: the election ends soon."""
    return exc.code == 503 or exc.err_code in (10008, 10039)


def _cannot_hold(settings: ReplicationSettings, exc: APIError) -> ReplicationError:
    return ReplicationConfigError(
        f"NATS cannot hold the journal stream {settings.stream} with {settings.replicas} "
        f"replicas: {exc.description} (code {exc.err_code})",
        message_ja=f"NATS がストリーム {settings.stream}（複製数 {settings.replicas}）を"
        "作れません",
        next_step="continuity.replicas must not exceed the JetStream servers of the cluster "
        "(1 for a single node); check that JetStream is enabled",
    )


def _publish_failed(settings: ReplicationSettings, exc: Exception) -> ReplicationError:
    return PublishFailedError(
        f"the stream {settings.stream} did not acknowledge a batch within "
        f"{settings.publish_timeout_ms} ms ({type(exc).__name__}: {exc})",
        message_ja="ストリームがバッチを確認応答しませんでした",
        next_step="the venue stopped acknowledging; check the NATS cluster. A standby takes "
        "over once the lease runs out",
    )
