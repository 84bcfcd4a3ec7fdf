"""Records: how one sequenced command becomes bytes in a segment, and back.

Record layout (little-endian, no padding), format 2, written now::

    record  = length:u32 | payload[length] | crc:u32
    crc     = CRC32C(length bytes || payload), started from CHAIN_SEED
    payload = kind:u8 | seq:u64 | ts:i64 | body

Format 1 (older segments, still read) put the CRC, started from 0, before the payload. The
segment header says which format its records use. Starting from CHAIN_SEED makes the CRC of
any run of intact format 2 records CHAIN_SEED again, so recovery checks a run of plain
records with one call and re-checks record by record only a run that fails.

Orders and cancels, nearly all of the traffic, have fixed ``struct`` layouts so encoding is
one ``pack`` and decoding one ``unpack_from``; every other command is MessagePack after the
kind byte. Enums are byte codes: their position in the tables below, which may only ever be
appended to, since reordering would reinterpret old journals.

Market symbols are not repeated in every record. Each segment has its own symbol table,
empty at the segment's start: the first record naming a market carries the symbol inline
(market code ``NEW_SYMBOL``) and thereby gives it the next code; later records carry only
the code. A segment therefore decodes on its own, from its first record.

The CRC covers the length too, so a flipped bit in a length field cannot silently re-frame
the rest of the segment. See docs/adr/0001-journal-format-and-fsync-policy.md.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import Enum
from typing import Final

import msgspec
from crc32c import crc32c

from haltguard.journal.errors import JournalSequenceError, UnjournalableCommandError
from haltguard.venue.commands import CancelOrder, Command, PlaceOrder
from haltguard.venue.engine import GTC_LIMIT_BUY, GTC_LIMIT_SELL
from haltguard.venue.types import OrderType, SelfTradePrevention, Side, TimeInForce

KIND_PLACE_ORDER: Final = 1
KIND_CANCEL_ORDER: Final = 2
KIND_MSGPACK: Final = 3

# Two record formats; a segment's header says which one its records use.
# Version 1 (older segments): length:u32 | crc:u32 | payload, crc = CRC32C(length || payload).
# Version 2 (written now):    length:u32 | payload | crc:u32, the same CRC started from
# CHAIN_SEED instead of 0. Both add 8 bytes of framing to a payload.
RECORD_V1: Final = 1
RECORD_V2: Final = 2
RECORD_VERSION: Final = RECORD_V2  # what the writer produces
RECORD_VERSIONS: Final = (RECORD_V1, RECORD_V2)
CHAIN_SEED: Final = 0x48674BC7
"""CRC32C's residue: ``crc32c(m + crc32c(m, s).to_bytes(4, "little"), s)`` is this value for
every ``m`` and ``s``. A version 2 record's CRC starts from it, so the CRC of an intact record
computed from CHAIN_SEED is CHAIN_SEED again, and so is that of any run of intact records:
one ``crc32c`` call checks a whole run (see RecordDecoder._decode_v2)."""

FRAME: Final = struct.Struct("<II")  # version 1: length, crc
FRAME_BYTES: Final = FRAME.size  # framing bytes per record, either version
HEAD: Final = struct.Struct("<BQq")  # kind, seq, ts: the start of every payload
HEAD_BYTES: Final = HEAD.size
# kind seq ts market_code account enum_codes qty price client_order_id_len
_PLACE: Final = struct.Struct("<BQqHqHqqH")
# kind seq ts market_code account order_id client_order_id_len
_CANCEL: Final = struct.Struct("<BQqHqqH")
_LENGTH: Final = struct.Struct("<I")
# The same two layouts with the frame around them: one unpack reads a whole plain record
# (the kind byte, already looked at, and a version 2 record's CRC are skipped).
_PLACE_RECORD: Final = struct.Struct("<IIx" + _PLACE.format[2:])
_CANCEL_RECORD: Final = struct.Struct("<IIx" + _CANCEL.format[2:])
_PLACE_RECORD_V2: Final = struct.Struct("<Ix" + _PLACE.format[2:] + "4x")
_CANCEL_RECORD_V2: Final = struct.Struct("<Ix" + _CANCEL.format[2:] + "4x")
_CRC: Final = struct.Struct("<I")

# A payload larger than this is refused when written and treated as damage when read.
RECORD_PAYLOAD_BYTES_MAX: Final = 1 << 20
NEW_SYMBOL: Final = 0xFFFF  # market code meaning "symbol follows inline, takes the next code"
SYMBOLS_PER_SEGMENT_MAX: Final = NEW_SYMBOL  # codes 0 .. 0xFFFE
SYMBOL_BYTES_MAX: Final = 255
CLIENT_ORDER_ID_BYTES_MAX: Final = 0xFFFF

# Append-only code tables: a member's code is its position.
SIDES: Final = (Side.BUY, Side.SELL)
ORDER_TYPES: Final = (OrderType.LIMIT, OrderType.MARKET)
TIMES_IN_FORCE: Final = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)
SELF_TRADE_PREVENTIONS: Final = (
    SelfTradePrevention.CANCEL_TAKER,
    SelfTradePrevention.CANCEL_MAKER,
    SelfTradePrevention.CANCEL_BOTH,
)

# Bit fields of an order's enum_codes word: side 2 bits, order type 3, tif 3, stp 3, post 1.
_TYPE_SHIFT, _TIF_SHIFT, _STP_SHIFT, _POST_ONLY_BIT = 2, 5, 8, 1 << 11
_ENUM_CODES_MAX: Final = 1 << 12


def _codes(members: tuple[Enum, ...], shift: int) -> dict[object, int]:
    return {member: index << shift for index, member in enumerate(members)}


_SIDE_CODE = _codes(SIDES, 0)
_TYPE_CODE = _codes(ORDER_TYPES, _TYPE_SHIFT)
_TIF_CODE = _codes(TIMES_IN_FORCE, _TIF_SHIFT)
_STP_CODE = _codes(SELF_TRADE_PREVENTIONS, _STP_SHIFT)
_POST_ONLY_CODE: dict[object, int] = {False: 0, True: _POST_ONLY_BIT}
_LIMIT, _GTC, _CANCEL_TAKER = OrderType.LIMIT, TimeInForce.GTC, SelfTradePrevention.CANCEL_TAKER
assert _TYPE_CODE[_LIMIT] == _TIF_CODE[_GTC] == _STP_CODE[_CANCEL_TAKER] == 0

OrderEnums = tuple[Side, OrderType, TimeInForce, SelfTradePrevention, bool]


def _order_enum_table() -> list[OrderEnums | None]:
    """Every valid enum_codes word mapped to its members; ``None`` marks an invalid word."""
    table: list[OrderEnums | None] = [None] * _ENUM_CODES_MAX
    for side in SIDES:
        for order_type in ORDER_TYPES:
            for tif in TIMES_IN_FORCE:
                for stp in SELF_TRADE_PREVENTIONS:
                    for post_only in (False, True):
                        code = (
                            _SIDE_CODE[side]
                            | _TYPE_CODE[order_type]
                            | _TIF_CODE[tif]
                            | _STP_CODE[stp]
                            | _POST_ONLY_CODE[post_only]
                        )
                        table[code] = (side, order_type, tif, stp, post_only)
    return table


ORDER_ENUMS: Final = _order_enum_table()
# The same words for orders with the default options (cancel-taker, not post-only), as
# (side, order type, time in force); None for any other word. Replay hands these over as
# fields (see OrderSink) instead of building a command.
# The two commonest, GTC limit buy and sell, are the venue's own tuples (which it tells apart
# by identity, see Venue.replay_batch).
_SHARED_OPTIONS = {options: options for options in (GTC_LIMIT_BUY, GTC_LIMIT_SELL)}
PLAIN_ORDER_ENUMS: Final = [
    None
    if e is None or e[3] is not _CANCEL_TAKER or e[4]
    else _SHARED_OPTIONS.get((e[0], e[1], e[2]), (e[0], e[1], e[2]))
    for e in ORDER_ENUMS
]

# The decoder builds orders and cancels positionally, in this field order.
assert PlaceOrder.__struct_fields__ == (
    "market", "account", "side", "qty", "price", "order_type", "tif", "post_only", "stp",
    "client_order_id",
), "PlaceOrder's fields changed: update the journal codec's fast paths"
assert CancelOrder.__struct_fields__ == ("market", "account", "order_id", "client_order_id"), (
    "CancelOrder's fields changed: update the journal codec's fast paths"
)
_ENCODER = msgspec.msgpack.Encoder()
COMMAND_DECODER: Final = msgspec.msgpack.Decoder(Command)

_length_seeds: dict[int, int] = {}


def length_seed(length: int) -> int:
    """CRC32C of the 4 length bytes, the starting value for the payload's CRC (cached)."""
    seed = _length_seeds.get(length)
    if seed is None:
        seed = crc32c(_LENGTH.pack(length))
        if len(_length_seeds) < 4096:
            _length_seeds[length] = seed
    return seed


def record_crc(payload: bytes | memoryview) -> int:
    """A version 1 record's CRC of ``payload``."""
    return crc32c(payload, length_seed(len(payload)))


def chained_seed(length: int) -> int:
    """A version 2 record's CRC of its 4 length bytes, where its payload's CRC starts."""
    return crc32c(_LENGTH.pack(length), CHAIN_SEED)


def record_intact(data: bytes, pos: int, length: int, version: int) -> bool:
    """True if the record at ``pos`` with a ``length``-byte payload passes its checksum
    (its bytes must be in ``data``)."""
    if version == RECORD_V1:
        body = pos + FRAME_BYTES
        stored: int = FRAME.unpack_from(data, pos)[1]
        return record_crc(data[body : body + length]) == stored
    return crc32c(data[pos : pos + FRAME_BYTES + length], CHAIN_SEED) == CHAIN_SEED


def seq_offset(version: int) -> int:
    """Where a record's seq starts, counted from the record's first byte."""
    return (FRAME_BYTES if version == RECORD_V1 else _LENGTH.size) + 1


_PLACE_SEED: Final = chained_seed(_PLACE.size)
_CANCEL_SEED: Final = chained_seed(_CANCEL.size)
_PLACE_FRAMED: Final = struct.Struct(f"<I{_PLACE.size}sI")  # a packed payload, framed (v2)
_CANCEL_FRAMED: Final = struct.Struct(f"<I{_CANCEL.size}sI")


def frame(payload: bytes, version: int = RECORD_VERSION) -> bytes:
    """``payload`` as a complete record of the given format version."""
    length = len(payload)
    if version == RECORD_V1:
        return FRAME.pack(length, crc32c(payload, length_seed(length))) + payload
    return (
        _LENGTH.pack(length) + payload + _CRC.pack(crc32c(payload, chained_seed(length)))
    )


def encode_record(
    seq: int, ts: int, command: Command, symbols: dict[str, int], version: int = RECORD_VERSION
) -> bytes:
    """One complete record (frame included) for ``command`` at ``seq`` and ``ts``.

    ``symbols`` is the current segment's market table; a market seen for the first time in
    this segment is added to it. Raises :class:`UnjournalableCommandError` (with nothing added)
    for a command that cannot be stored faithfully. :meth:`BatchEncoder.append` produces the
    same bytes faster for plain orders and cancels. ``version`` is the record format (the
    writer always uses the current one; tests write older segments with it).
    """
    encoded: bytes | None = None
    try:
        if type(command) is PlaceOrder:
            encoded = _encode_place_order(seq, ts, command, symbols)
        elif type(command) is CancelOrder:
            encoded = _encode_cancel_order(seq, ts, command, symbols)
        if encoded is None:
            encoded = _encode_msgpack(seq, ts, command)
    except UnicodeEncodeError as exc:
        raise UnjournalableCommandError(
            f"{_label(command, seq)} has text that is not valid Unicode ({exc}); send text "
            "without unpaired surrogates"
        ) from None
    except (TypeError, AttributeError) as exc:  # a field of the wrong type
        raise UnjournalableCommandError(
            f"{_label(command, seq)} has a field of the wrong type ({exc}); build commands "
            "with the venue's types"
        ) from None
    return frame(encoded, version)


def check_journalable(command: Command) -> None:
    """Raise :class:`UnjournalableCommandError` if ``command`` could not be journaled.

    For the edge that accepts commands from outside: call it before a sequence number is
    assigned, so a bad command is refused on its own instead of failing a journal append.
    """
    encode_record(0, 0, command, {})


def _label(command: object, seq: int) -> str:
    """How error messages name a command: with its seq once it has one (0: not yet)."""
    name = type(command).__name__
    return f"{name} at seq {seq}" if seq else name


class BatchEncoder:
    """Encodes appended commands into the records of the next group commit.

    Owns what encoding needs between appends: the current segment's symbol table, the
    last seq and ts (appends must be gap-free and never go back in time), and the encoded
    records not yet written. :meth:`append` runs once per command on the venue's hot path,
    so plain orders and cancels (a known market, no client order id) are encoded inline
    here; everything else goes through :func:`encode_record`, which gives the same bytes.
    """

    __slots__ = ("_keep", "last_seq", "last_ts", "records", "symbols")

    def __init__(self, last_seq: int, last_ts: int) -> None:
        self.last_seq = last_seq
        self.last_ts = last_ts
        self.records: list[bytes] = []
        self._keep = self.records.append
        self.symbols: dict[str, int] = {}

    def append(self, seq: int, ts: int, command: Command) -> None:
        """Encode and keep one record. Raises before keeping anything if it cannot."""
        if seq != self.last_seq + 1 or ts < self.last_ts:
            raise self._out_of_order(seq, ts)
        if type(command) is PlaceOrder:
            try:
                if command.client_order_id:
                    raise KeyError  # the general path stores it
                code = self.symbols[command.market]  # KeyError: first in this segment
                if (
                    command.order_type is _LIMIT
                    and command.tif is _GTC
                    and command.stp is _CANCEL_TAKER
                    and command.post_only is False
                ):
                    enum_codes = _SIDE_CODE[command.side]  # a plain limit order
                else:
                    enum_codes = (
                        _SIDE_CODE[command.side]
                        | _TYPE_CODE[command.order_type]
                        | _TIF_CODE[command.tif]
                        | _STP_CODE[command.stp]
                        | _POST_ONLY_CODE[command.post_only]
                    )
                payload = _PLACE.pack(
                    KIND_PLACE_ORDER, seq, ts, code, command.account, enum_codes,
                    command.qty, command.price, 0,
                )
            except (KeyError, TypeError, struct.error):
                pass
            else:
                self._keep(_PLACE_FRAMED.pack(_PLACE.size, payload, crc32c(payload, _PLACE_SEED)))
                self.last_seq = seq
                self.last_ts = ts
                return
        elif type(command) is CancelOrder:
            try:
                if command.client_order_id:
                    raise KeyError  # the general path stores it
                payload = _CANCEL.pack(
                    KIND_CANCEL_ORDER, seq, ts, self.symbols[command.market], command.account,
                    command.order_id, 0,
                )
            except (KeyError, TypeError, struct.error):
                pass
            else:
                self._keep(
                    _CANCEL_FRAMED.pack(_CANCEL.size, payload, crc32c(payload, _CANCEL_SEED))
                )
                self.last_seq = seq
                self.last_ts = ts
                return
        self.records.append(encode_record(seq, ts, command, self.symbols))
        self.last_seq = seq
        self.last_ts = ts

    def take(self) -> bytes:
        """The kept records as one block for a single write; the batch starts empty again."""
        block = b"".join(self.records)
        self.records = []
        self._keep = self.records.append
        return block

    def new_segment(self) -> None:
        """Records from now on go to a new segment, whose symbol table starts empty."""
        self.symbols = {}

    def _out_of_order(self, seq: int, ts: int) -> JournalSequenceError:
        if seq != self.last_seq + 1:
            return JournalSequenceError(
                f"append of seq {seq} but the journal's last seq is {self.last_seq}; "
                "sequence numbers must be gap-free"
            )
        return JournalSequenceError(
            f"append of seq {seq} with ts {ts} before the last ts {self.last_ts}"
        )


def _symbol_prefix(market: str, symbols: dict[str, int]) -> tuple[int, bytes] | None:
    """The market code and inline bytes for ``market``; None if it cannot use the table."""
    code = symbols.get(market)
    if code is not None:
        return code, b""
    raw = market.encode()
    if len(raw) > SYMBOL_BYTES_MAX or len(symbols) >= SYMBOLS_PER_SEGMENT_MAX:
        return None
    return NEW_SYMBOL, bytes((len(raw),)) + raw


def _encode_place_order(
    seq: int, ts: int, order: PlaceOrder, symbols: dict[str, int]
) -> bytes | None:
    try:
        enum_codes = (
            _SIDE_CODE[order.side]
            | _TYPE_CODE[order.order_type]
            | _TIF_CODE[order.tif]
            | _STP_CODE[order.stp]
            | _POST_ONLY_CODE[order.post_only]
        )
    except (KeyError, TypeError):
        return None
    symbol = _symbol_prefix(order.market, symbols)
    if symbol is None:
        return None
    client_order_id = order.client_order_id.encode() if order.client_order_id else b""
    if len(client_order_id) > CLIENT_ORDER_ID_BYTES_MAX:
        return None
    code, inline = symbol
    try:
        head = _PLACE.pack(
            KIND_PLACE_ORDER, seq, ts, code, order.account, enum_codes,
            order.qty, order.price, len(client_order_id),
        )
    except struct.error:
        return None
    if code == NEW_SYMBOL:
        symbols[order.market] = len(symbols)
        return head + inline + client_order_id
    return head + client_order_id if client_order_id else head


def _encode_cancel_order(
    seq: int, ts: int, cancel: CancelOrder, symbols: dict[str, int]
) -> bytes | None:
    symbol = _symbol_prefix(cancel.market, symbols)
    if symbol is None:
        return None
    client_order_id = cancel.client_order_id.encode() if cancel.client_order_id else b""
    if len(client_order_id) > CLIENT_ORDER_ID_BYTES_MAX:
        return None
    code, inline = symbol
    try:
        head = _CANCEL.pack(
            KIND_CANCEL_ORDER, seq, ts, code, cancel.account, cancel.order_id,
            len(client_order_id),
        )
    except struct.error:
        return None
    if code == NEW_SYMBOL:
        symbols[cancel.market] = len(symbols)
    return head + inline + client_order_id


def _encode_msgpack(seq: int, ts: int, command: Command) -> bytes:
    try:
        body = _ENCODER.encode(command)
        head = HEAD.pack(KIND_MSGPACK, seq, ts)
    except (OverflowError, struct.error, TypeError) as exc:
        raise UnjournalableCommandError(
            f"{_label(command, seq)} cannot be stored: {exc}; numbers must fit in 64 bits"
        ) from None
    # The fast paths store typed fields; here a wrongly typed field would encode fine and
    # then fail on replay, so prove it decodes to the same command before accepting it.
    try:
        decoded = COMMAND_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise UnjournalableCommandError(
            f"{_label(command, seq)} has a field of the wrong type ({exc}); build commands "
            "with the venue's types"
        ) from None
    if decoded != command:
        raise UnjournalableCommandError(
            f"{_label(command, seq)} does not survive a round trip; build commands with the "
            "venue's types"
        )
    if HEAD_BYTES + len(body) > RECORD_PAYLOAD_BYTES_MAX:
        raise UnjournalableCommandError(
            f"{_label(command, seq)} needs {len(body)} bytes, more than the "
            f"{RECORD_PAYLOAD_BYTES_MAX} a record may hold; split it"
        )
    return head + body


# Why a span of bytes stopped decoding before its end. The segment layer decides whether
# that is a torn tail (cut off) or corruption (refused).
STOP_INCOMPLETE_FRAME: Final = "incomplete record header"
STOP_PAST_END: Final = "record runs past the end of the segment"
STOP_BAD_LENGTH: Final = "bad record length"
STOP_BAD_CRC: Final = "checksum mismatch"
STOP_BAD_CONTENT: Final = "record passes its checksum but does not decode"
STOP_SEQ_GAP: Final = "sequence number out of order"


class DecodeStop(msgspec.Struct, frozen=True):
    """Where and why decoding stopped early; ``found_seq`` is set for a sequence gap."""

    offset: int
    reason: str
    detail: str = ""
    found_seq: int = 0


Sink = Callable[[int, int, Command], object]
# ``(seq, ts, market, account, side, qty, price, order_type, tif)`` of an order with no client
# order id, cancel-taker and not post-only: ``Venue.replay_order``'s signature.
OrderSink = Callable[[int, int, str, int, Side, int, int, OrderType, TimeInForce], object]
# ``(seq, ts, market, account, order_id)`` of a cancel by order id: ``Venue.replay_cancel``.
CancelSink = Callable[[int, int, str, int, int], object]
# A list of plain orders ``(seq, ts, market, account, qty, price, (side, order_type, tif))``
# and cancels ``(seq, ts, market, account, order_id, 0, None)``: ``Venue.replay_batch``.
PlainRecord = tuple[int, int, str, int, int, int, tuple[Side, OrderType, TimeInForce] | None]
BatchSink = Callable[[list[PlainRecord]], object]
# Plain records are handed to a batch sink in runs of about this many bytes of log (about
# 700 records): small enough that the run's tuples are still in the CPU cache when the venue
# reads them (256 KiB runs made decoding alone twice as slow), large enough that a call
# per run costs nothing.
BATCH_SPAN_BYTES: Final = 1 << 15


class RecordDecoder:
    """Decodes consecutive records of one segment, keeping that segment's symbol table.

    Start one per segment (at its first record), for the record format its header names;
    feed it spans in order.
    """

    __slots__ = ("symbols", "version")

    def __init__(self, version: int = RECORD_VERSION) -> None:
        if version not in RECORD_VERSIONS:
            raise ValueError(f"record format version {version} is not one of {RECORD_VERSIONS}")
        self.symbols: list[str] = []
        self.version = version

    def decode_span(
        self,
        data: bytes,
        pos: int,
        expected_seq: int,
        *,
        sink: Sink,
        order_sink: OrderSink | None = None,
        cancel_sink: CancelSink | None = None,
        batch_sink: BatchSink | None = None,
        skip_through_seq: int = 0,
    ) -> tuple[int, int, DecodeStop | None]:
        """Decode the records from ``pos`` to the end of ``data`` into ``sink(seq, ts, command)``.

        With ``order_sink`` and ``cancel_sink`` (recovery passes ``Venue.replay_order`` and
        ``Venue.replay_cancel``), plain orders and cancels go to those as fields and no
        command object is built for them. With ``batch_sink`` (recovery passes
        ``Venue.replay_batch``) they go to it instead, as lists of tuples (see
        ``PlainRecord``), each list handed over before any other record is passed on, so
        the order of everything stays that of the log. Records at or below
        ``skip_through_seq`` are checked and decoded but not passed on (they are already
        inside a snapshot). Returns the offset after the last good record, the next
        expected seq, and why decoding stopped early (None at the end).

        This is the replay hot loop. A plain order or cancel (market already in the
        segment's table, no client order id) is read with one ``unpack_from`` covering
        frame and payload; every other record takes :meth:`_decode_one`. A version 1
        record's CRC is checked on its own, version 2 records a run at a time
        (:meth:`_decode_v2`).
        """
        end = len(data)
        while pos < end and expected_seq <= skip_through_seq:  # inside the snapshot: skip
            decoded = self._decode_one(data, pos, expected_seq)
            if type(decoded) is DecodeStop:
                return pos, expected_seq, decoded
            expected_seq, pos = decoded[0] + 1, decoded[3]  # type: ignore[index]
        if batch_sink is None:  # one by one: the same loop, handing over one record at a time
            batch_sink = _each_to(sink, order_sink, cancel_sink)
        if self.version == RECORD_V2:
            return self._decode_v2(data, pos, expected_seq, sink, batch_sink)
        return self._decode_batched(data, pos, expected_seq, sink, batch_sink)

    def _decode_batched(
        self, data: bytes, pos: int, expected_seq: int, sink: Sink, batch_sink: BatchSink
    ) -> tuple[int, int, DecodeStop | None]:
        """:meth:`decode_span` for version 1 records: plain records are collected for the
        batch sink once they pass the checks (length, seq, known market code, no client order
        id, their own CRC, a plain options word); anything else takes :meth:`_decode_one`
        after the records collected so far were handed over.
        """
        end = len(data)
        symbols = self.symbols
        unpack_place, place_bytes = _PLACE_RECORD.unpack_from, _PLACE_RECORD.size
        unpack_cancel, cancel_bytes = _CANCEL_RECORD.unpack_from, _CANCEL_RECORD.size
        place_length, cancel_length = _PLACE.size, _CANCEL.size
        place_seed, cancel_seed = length_seed(place_length), length_seed(cancel_length)
        plain_enums = PLAIN_ORDER_ENUMS
        known_symbols = len(symbols)
        batch: list[PlainRecord] = []
        keep = batch.append
        while pos < end:
            span_end = min(pos + BATCH_SPAN_BYTES, end)
            while pos < span_end:
                body = pos + 8
                kind = data[body] if body < end else 0
                if kind == KIND_PLACE_ORDER:
                    stop = pos + place_bytes
                    if stop <= end:
                        (length, crc, seq, ts, code, account, enum_codes, qty, price, id_bytes) = (
                            unpack_place(data, pos)
                        )
                        if (
                            length == place_length
                            and seq == expected_seq
                            and code < known_symbols
                            and not id_bytes
                            and crc32c(data[body:stop], place_seed) == crc
                        ):
                            enums = plain_enums[enum_codes]
                            if enums is not None:
                                keep((seq, ts, symbols[code], account, qty, price, enums))
                                expected_seq = seq + 1
                                pos = stop
                                continue
                elif kind == KIND_CANCEL_ORDER:
                    stop = pos + cancel_bytes
                    if stop <= end:
                        (length, crc, seq, ts, code, account, order_id, id_bytes) = (
                            unpack_cancel(data, pos)
                        )
                        if (
                            length == cancel_length
                            and seq == expected_seq
                            and code < known_symbols
                            and not id_bytes
                            and crc32c(data[body:stop], cancel_seed) == crc
                        ):
                            keep((seq, ts, symbols[code], account, order_id, 0, None))
                            expected_seq = seq + 1
                            pos = stop
                            continue
                if batch:
                    batch_sink(batch)
                    batch = []
                    keep = batch.append
                decoded = self._decode_one(data, pos, expected_seq)
                if type(decoded) is DecodeStop:
                    return pos, expected_seq, decoded
                seq, ts, command, pos = decoded  # type: ignore[misc]
                sink(seq, ts, command)
                expected_seq = seq + 1
                known_symbols = len(symbols)
            if batch:
                batch_sink(batch)
                batch = []
                keep = batch.append
        return pos, expected_seq, None

    def _decode_v2(
        self, data: bytes, pos: int, expected_seq: int, sink: Sink, batch_sink: BatchSink
    ) -> tuple[int, int, DecodeStop | None]:
        """Version 2 records: plain ones are framed and collected without a CRC call each;
        the run collected is checked with one CRC call (CHAIN_SEED) before it is handed over.

        A run is handed over when it reaches ``BATCH_SPAN_BYTES``, before any other record,
        and at the end. A run that fails its check is decoded again record by record
        (:meth:`_careful`), which passes on every record before the damaged one and stops
        there with the same offset and reason a record-by-record check gives. The last
        bytes of ``data`` (less than a plain record) are decoded record by record too, so
        the loop needs no bounds checks.
        """
        end = len(data)
        fast_end = end - _PLACE_RECORD_V2.size  # a plain record starting before this fits
        symbols = self.symbols
        unpack_place, place_bytes = _PLACE_RECORD_V2.unpack_from, _PLACE_RECORD_V2.size
        unpack_cancel, cancel_bytes = _CANCEL_RECORD_V2.unpack_from, _CANCEL_RECORD_V2.size
        place_length, cancel_length = _PLACE.size, _CANCEL.size
        plain_enums = PLAIN_ORDER_ENUMS
        known_symbols = len(symbols)
        batch: list[PlainRecord] = []
        keep = batch.append
        while pos < fast_end:
            run_start, run_seq = pos, expected_seq  # records from here are not yet checked
            span_end = min(pos + BATCH_SPAN_BYTES, fast_end)
            while pos < span_end:
                kind = data[pos + 4]
                if kind == KIND_PLACE_ORDER:
                    (length, seq, ts, code, account, enum_codes, qty, price, id_bytes) = (
                        unpack_place(data, pos)
                    )
                    if (
                        length == place_length
                        and seq == expected_seq
                        and code < known_symbols
                        and not id_bytes
                    ):
                        enums = plain_enums[enum_codes]
                        if enums is not None:
                            keep((seq, ts, symbols[code], account, qty, price, enums))
                            expected_seq = seq + 1
                            pos += place_bytes
                            continue
                elif kind == KIND_CANCEL_ORDER:
                    (length, seq, ts, code, account, order_id, id_bytes) = (
                        unpack_cancel(data, pos)
                    )
                    if (
                        length == cancel_length
                        and seq == expected_seq
                        and code < known_symbols
                        and not id_bytes
                    ):
                        keep((seq, ts, symbols[code], account, order_id, 0, None))
                        expected_seq = seq + 1
                        pos += cancel_bytes
                        continue
                if run_start < pos:
                    if crc32c(data[run_start:pos], CHAIN_SEED) != CHAIN_SEED:
                        return self._careful(data, run_start, run_seq, sink)
                    batch_sink(batch)
                    batch = []
                    keep = batch.append
                decoded = self._decode_one(data, pos, expected_seq)
                if type(decoded) is DecodeStop:
                    return pos, expected_seq, decoded
                seq, ts, command, pos = decoded  # type: ignore[misc]
                sink(seq, ts, command)
                expected_seq = seq + 1
                known_symbols = len(symbols)
                run_start, run_seq = pos, expected_seq
            if run_start < pos:
                if crc32c(data[run_start:pos], CHAIN_SEED) != CHAIN_SEED:
                    return self._careful(data, run_start, run_seq, sink)
                batch_sink(batch)
                batch = []
                keep = batch.append
        return self._careful(data, pos, expected_seq, sink)

    def _careful(
        self, data: bytes, pos: int, expected_seq: int, sink: Sink
    ) -> tuple[int, int, DecodeStop | None]:
        """Record by record, each checked on its own, from ``pos``: where a run that failed
        its checksum is damaged, and every record before that passed on."""
        end = len(data)
        while pos < end:
            decoded = self._decode_one(data, pos, expected_seq)
            if type(decoded) is DecodeStop:
                return pos, expected_seq, decoded
            seq, ts, command, pos = decoded  # type: ignore[misc]
            sink(seq, ts, command)
            expected_seq = seq + 1
        return pos, expected_seq, None

    def _decode_one(
        self, data: bytes, pos: int, expected_seq: int
    ) -> tuple[int, int, Command, int] | DecodeStop:
        """Decode the record at ``pos`` with every check: ``(seq, ts, command, next_pos)``."""
        end = len(data)
        v1 = self.version == RECORD_V1
        body = pos + (FRAME_BYTES if v1 else _LENGTH.size)  # where the payload starts
        if body > end:
            return DecodeStop(pos, STOP_INCOMPLETE_FRAME)
        length = _LENGTH.unpack_from(data, pos)[0]
        stop = body + length  # where the payload ends
        after = stop if v1 else stop + _CRC.size  # where the next record starts
        if not HEAD_BYTES <= length <= RECORD_PAYLOAD_BYTES_MAX:
            return DecodeStop(pos, STOP_BAD_LENGTH, f"length {length}")
        if after > end:
            return DecodeStop(pos, STOP_PAST_END, f"length {length}")
        if not record_intact(data, pos, length, self.version):
            return DecodeStop(pos, STOP_BAD_CRC)
        kind = data[body]
        symbols = self.symbols
        try:
            if kind == KIND_PLACE_ORDER:
                (_, seq, ts, code, account, enum_codes, qty, price, id_bytes) = (
                    _PLACE.unpack_from(data, body)
                )
                tail = body + _PLACE.size
                if code == NEW_SYMBOL:
                    tail = _read_symbol(data, tail, symbols)
                    code = len(symbols) - 1
                enums = ORDER_ENUMS[enum_codes]
                if enums is None or tail + id_bytes != stop:
                    raise ValueError("fields do not match the record length")
                side, order_type, tif, stp, post_only = enums
                command: Command = PlaceOrder(
                    symbols[code], account, side, qty, price, order_type, tif, post_only, stp,
                    data[tail:stop].decode(),
                )
            elif kind == KIND_CANCEL_ORDER:
                (_, seq, ts, code, account, order_id, id_bytes) = _CANCEL.unpack_from(data, body)
                tail = body + _CANCEL.size
                if code == NEW_SYMBOL:
                    tail = _read_symbol(data, tail, symbols)
                    code = len(symbols) - 1
                if tail + id_bytes != stop:
                    raise ValueError("fields do not match the record length")
                command = CancelOrder(symbols[code], account, order_id, data[tail:stop].decode())
            elif kind == KIND_MSGPACK:
                _, seq, ts = HEAD.unpack_from(data, body)
                command = COMMAND_DECODER.decode(data[body + HEAD_BYTES : stop])
            else:
                raise ValueError(f"unknown record kind {kind}")
        except (ValueError, IndexError, struct.error, msgspec.DecodeError) as exc:
            return DecodeStop(pos, STOP_BAD_CONTENT, str(exc))
        if seq != expected_seq:
            return DecodeStop(pos, STOP_SEQ_GAP, f"expected seq {expected_seq}, found {seq}", seq)
        return seq, ts, command, after


def _order_to(sink: Sink) -> OrderSink:
    """An order sink that builds the command and hands it to ``sink``."""

    def order_sink(  # noqa: PLR0917 - mirrors Venue.replay_order
        seq: int, ts: int, market: str, account: int, side: Side, qty: int, price: int,
        order_type: OrderType, tif: TimeInForce,
    ) -> None:
        sink(seq, ts, PlaceOrder(market, account, side, qty, price, order_type, tif))

    return order_sink


def _cancel_to(sink: Sink) -> CancelSink:
    """A cancel sink that builds the command and hands it to ``sink``."""

    def cancel_sink(seq: int, ts: int, market: str, account: int, order_id: int) -> None:
        sink(seq, ts, CancelOrder(market, account, order_id))

    return cancel_sink


def _each_to(
    sink: Sink, order_sink: OrderSink | None, cancel_sink: CancelSink | None
) -> BatchSink:
    """A batch sink that hands each record to the order or cancel sink (or builds the
    command for ``sink``), for callers that want records one by one."""
    orders = order_sink or _order_to(sink)
    cancels = cancel_sink or _cancel_to(sink)

    def each(batch: list[PlainRecord]) -> None:
        for seq, ts, market, account, number, price, enums in batch:
            if enums is None:
                cancels(seq, ts, market, account, number)
            else:
                side, order_type, tif = enums
                orders(seq, ts, market, account, side, number, price, order_type, tif)

    return each


def _read_symbol(data: bytes, pos: int, symbols: list[str]) -> int:
    """Read an inline symbol at ``pos``, add it to the table, return the offset after it."""
    size = data[pos]
    raw = data[pos + 1 : pos + 1 + size]
    if len(raw) != size:
        raise ValueError("inline market symbol is cut short")
    symbols.append(raw.decode())
    return pos + 1 + size


def peek_seq(data: bytes, record_offset: int, version: int = RECORD_VERSION) -> int | None:
    """The seq a (possibly damaged) record claims, if its bytes are there; unverified."""
    start = record_offset + seq_offset(version)
    if start + 8 > len(data):
        return None
    seq: int = struct.unpack_from("<Q", data, start)[0]
    return seq


def decode_record(data: bytes, version: int = RECORD_VERSION) -> tuple[int, int, Command]:
    """Decode exactly one complete record (with a fresh symbol table); for tests and tools."""
    decoded: list[tuple[int, int, Command]] = []
    if len(data) < FRAME_BYTES + HEAD_BYTES:
        raise ValueError("too short to be a record")
    seq = HEAD.unpack_from(data, seq_offset(version) - 1)[1]
    _, _, stop = RecordDecoder(version).decode_span(
        data, 0, seq, sink=lambda s, t, c: decoded.append((s, t, c))
    )
    if stop is not None or len(decoded) != 1:
        raise ValueError(f"not one valid record: {stop}")
    return decoded[0]
