"""Records: every command survives encode/decode exactly; the format is stable and strict."""

from __future__ import annotations

import typing

import pytest
from crc32c import crc32c
from hypothesis import example, given, settings
from hypothesis import strategies as st

from haltguard.journal import JournalSequenceError, UnjournalableCommandError, check_journalable
from haltguard.journal.codec import (
    CHAIN_SEED,
    KIND_CANCEL_ORDER,
    KIND_MSGPACK,
    KIND_PLACE_ORDER,
    RECORD_V1,
    RECORD_V2,
    RECORD_VERSIONS,
    STOP_BAD_CRC,
    BatchEncoder,
    PlainRecord,
    RecordDecoder,
    decode_record,
    encode_record,
    seq_offset,
)
from haltguard.venue import commands as c
from haltguard.venue.markets import Asset, BreakerConfig, MarketSpec
from haltguard.venue.types import (
    MarketState,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
WIDE_INT = st.integers(-(2**63), 2**64 - 1)  # what MessagePack can hold
TEXT = st.text(max_size=12)
SYMBOLS = st.sampled_from(["BTC-JPY", "ETH-JPY", "XRP-JPY", "ÉTH-€", ""]) | TEXT

breakers = st.builds(
    BreakerConfig, band_bps=st.lists(INT64, max_size=3), pause_ns=INT64,
    reference=TEXT, window_ns=INT64, limit_state_ns=INT64, daily_reset_ns_of_day=INT64,
)
specs = st.builds(
    MarketSpec, symbol=TEXT, base=TEXT, quote=TEXT, tick_size=TEXT, lot_size=TEXT,
    min_qty=INT64, max_qty=INT64, maker_fee_bps=INT64, taker_fee_bps=INT64,
    quote_per_tick_lot=INT64, base_per_lot=INT64, breaker=st.none() | breakers,
    reopen_auction_ns=INT64,
)
TRADE_FACTS = c.TradeFacts("BTC-JPY", 2**63 - 1, 1, 1, Side.SELL, 0, 2**63 - 1, 0, 5)
COMMANDS: dict[type, st.SearchStrategy[c.Command]] = {
    c.PlaceOrder: st.builds(
        c.PlaceOrder, market=SYMBOLS, account=WIDE_INT, side=st.sampled_from(Side),
        qty=WIDE_INT, price=WIDE_INT, order_type=st.sampled_from(OrderType),
        tif=st.sampled_from(TimeInForce), post_only=st.booleans(),
        stp=st.sampled_from(SelfTradePrevention), client_order_id=TEXT,
    ),
    c.CancelOrder: st.builds(
        c.CancelOrder, market=SYMBOLS, account=WIDE_INT, order_id=WIDE_INT,
        client_order_id=TEXT,
    ),
    c.CancelAll: st.builds(
        c.CancelAll, account=INT64, market=TEXT, actor=TEXT, reason=TEXT, incident_id=TEXT
    ),
    c.Deposit: st.builds(c.Deposit, account=INT64, asset=TEXT, amount=INT64, reference=TEXT),
    c.Withdraw: st.builds(
        c.Withdraw, account=INT64, asset=TEXT, amount=INT64, destination=TEXT, reference=TEXT
    ),
    c.AddAsset: st.builds(c.AddAsset, asset=st.builds(Asset, code=TEXT, decimals=INT64)),
    c.AddMarket: st.builds(c.AddMarket, spec=specs, state=st.sampled_from(MarketState)),
    c.SetMarketState: st.builds(
        c.SetMarketState, market=TEXT, state=st.sampled_from(MarketState), actor=TEXT,
        reason=TEXT, incident_id=TEXT, cancels_allowed=st.booleans(), auction_ns=INT64,
    ),
    c.KillSwitch: st.builds(
        c.KillSwitch, engaged=st.booleans(), actor=TEXT, reason=TEXT, incident_id=TEXT
    ),
    c.FreezeWithdrawals: st.builds(
        c.FreezeWithdrawals, asset=TEXT, frozen=st.booleans(), actor=TEXT, reason=TEXT,
        incident_id=TEXT,
    ),
    c.FreezeAccountWithdrawals: st.builds(
        c.FreezeAccountWithdrawals, account=WIDE_INT, frozen=st.booleans(), actor=TEXT,
        reason=TEXT, incident_id=TEXT,
    ),
    c.StartResumePlan: st.builds(
        c.StartResumePlan, market=TEXT,
        phases=st.lists(
            st.builds(c.ResumePhase, state=st.sampled_from(MarketState), min_ns=INT64),
            max_size=4,
        ),
        actor=TEXT, reason=TEXT, incident_id=TEXT,
    ),
    c.AbortResumePlan: st.builds(
        c.AbortResumePlan, market=TEXT, actor=TEXT, reason=TEXT, incident_id=TEXT
    ),
    c.Uncross: st.builds(c.Uncross, market=TEXT, actor=TEXT, reason=TEXT, incident_id=TEXT),
    c.ConfigureBreaker: st.builds(
        c.ConfigureBreaker, market=TEXT, breaker=st.none() | breakers, actor=TEXT, reason=TEXT
    ),
    c.Heartbeat: st.just(c.Heartbeat()),
    c.CreditCompensation: st.builds(
        c.CreditCompensation,
        lines=st.lists(
            st.builds(
                c.CompensationLine, account=INT64, asset=TEXT, amount=INT64, run_id=INT64,
                line_no=INT64,
            ),
            max_size=4,
        ),
        actor=TEXT, reason=TEXT,
    ),
    c.BustTrade: st.builds(
        c.BustTrade, trades=st.lists(st.builds(lambda: TRADE_FACTS), max_size=3), actor=TEXT,
        approver=TEXT,
        reason=TEXT, rule=TEXT, incident_id=TEXT, allow_debit=st.booleans(),
    ),
    c.AdjustTrade: st.builds(
        c.AdjustTrade, trade=st.builds(lambda: TRADE_FACTS), price=INT64, actor=TEXT,
        approver=TEXT, reason=TEXT, rule=TEXT, incident_id=TEXT, allow_debit=st.booleans(),
    ),
    c.RollbackTo: st.builds(
        c.RollbackTo, target_seq=INT64, first_trade_id=INT64, last_trade_id=INT64,
        corrections_seen=INT64,
        reversals=st.lists(
            st.builds(c.BalanceChange, asset=TEXT, account=INT64, amount=INT64), max_size=4
        ),
        actor=TEXT, approver=TEXT, reason=TEXT, rule=TEXT, incident_id=TEXT,
        allow_debit=st.booleans(),
    ),
}
any_command = st.one_of(*COMMANDS.values())


def test_strategies_cover_every_command_type() -> None:
    assert set(COMMANDS) == set(typing.get_args(c.Command))


def _decode_all(
    blob: bytes, first_seq: int, version: int = RECORD_V2
) -> list[tuple[int, int, c.Command]]:
    decoded: list[tuple[int, int, c.Command]] = []
    end, _, stop = RecordDecoder(version).decode_span(
        blob, 0, first_seq, sink=lambda s, t, cmd: decoded.append((s, t, cmd))
    )
    assert stop is None
    assert end == len(blob)
    return decoded


@settings(max_examples=300, deadline=None)
@given(
    commands=st.lists(any_command, min_size=1, max_size=12),
    first_seq=st.integers(1, 2**63),
    ts=st.integers(0, 2**62),
    version=st.sampled_from(RECORD_VERSIONS),
)
def test_every_command_type_round_trips_through_records_of_either_format(
    commands: list[c.Command], first_seq: int, ts: int, version: int
) -> None:
    symbols: dict[str, int] = {}
    items = [(first_seq + i, ts + i, command) for i, command in enumerate(commands)]
    blob = b"".join(
        encode_record(seq, t, command, symbols, version) for seq, t, command in items
    )
    assert _decode_all(blob, first_seq, version) == items


def test_orders_and_cancels_use_fixed_layouts_and_name_a_market_once_per_segment() -> None:
    symbols: dict[str, int] = {}
    order = c.PlaceOrder("BTC-JPY", 7, Side.BUY, 3, 100)
    first = encode_record(1, 10, order, symbols)
    second = encode_record(2, 11, order, symbols)
    cancel = encode_record(3, 12, c.CancelOrder("BTC-JPY", 7, order_id=1), symbols)
    heartbeat = encode_record(4, 13, c.Heartbeat(), symbols)
    kind = seq_offset(RECORD_V2) - 1
    assert (first[kind], second[kind], cancel[kind], heartbeat[kind]) == (
        KIND_PLACE_ORDER, KIND_PLACE_ORDER, KIND_CANCEL_ORDER, KIND_MSGPACK,
    )
    assert len(first) - len(second) == 1 + len("BTC-JPY")
    assert symbols == {"BTC-JPY": 0}


def test_place_order_record_bytes_are_stable() -> None:
    """The on-disk format never changes silently: old journals must stay readable."""
    order = c.PlaceOrder(
        "BTC-JPY", 42, Side.SELL, 5, 9_000_000, OrderType.LIMIT, TimeInForce.IOC, True,
        SelfTradePrevention.CANCEL_BOTH, "abc",
    )
    record = encode_record(7, 1_700_000_000_000_000_000, order, {})
    payload = bytes.fromhex(
        "01" "0700000000000000" "00002a36fe9c9717"  # kind, seq, ts
        "ffff" "2a00000000000000"  # market code "symbol follows", account 42
        "210a"  # sell | limit << 2 | ioc << 5 | cancel_both << 8 | post-only bit 11
        "0500000000000000" "4054890000000000" "0300"  # qty, price, client order id length
        "07" "4254432d4a5059" "616263"  # "BTC-JPY", "abc"
    )
    length = len(payload).to_bytes(4, "little")
    crc = crc32c(length + payload, CHAIN_SEED).to_bytes(4, "little")
    assert record == length + payload + crc
    assert crc32c(record, CHAIN_SEED) == CHAIN_SEED  # what lets one call check a run
    assert decode_record(record) == (7, 1_700_000_000_000_000_000, order)


def test_records_of_the_first_format_still_decode() -> None:
    """Segments written before the chained checksum (format 1) stay readable."""
    order = c.PlaceOrder("BTC-JPY", 42, Side.SELL, 5, 9_000_000)
    payload = bytes.fromhex(
        "01" "0700000000000000" "00002a36fe9c9717"  # kind, seq, ts
        "ffff" "2a00000000000000" "0100"  # market code "symbol follows", account 42, sell
        "0500000000000000" "4054890000000000" "0000"  # qty, price, client order id length
        "07" "4254432d4a5059"  # "BTC-JPY"
    )
    length = len(payload).to_bytes(4, "little")
    record = length + crc32c(length + payload).to_bytes(4, "little") + payload
    assert encode_record(7, 1_700_000_000_000_000_000, order, {}, RECORD_V1) == record
    assert decode_record(record, RECORD_V1) == (7, 1_700_000_000_000_000_000, order)


def test_a_damaged_record_in_a_checked_run_stops_there_after_passing_on_the_ones_before() -> None:
    """Format 2 checks a run of plain records with one CRC call; a damaged one is still
    found exactly, and nothing from it on is handed over."""
    encoder = BatchEncoder(last_seq=0, last_ts=0)
    encoder.append(1, 1, c.PlaceOrder("BTC-JPY", 1, Side.BUY, 1, 100))  # names the market
    for seq in range(2, 12):
        encoder.append(seq, seq, c.PlaceOrder("BTC-JPY", 1, Side.BUY, seq, 100))
    blob = bytearray(encoder.take())
    plain_order_bytes = 4 + 47 + 4  # length, payload, crc
    damaged_at = len(blob) - 4 * plain_order_bytes  # the record of seq 8
    blob[damaged_at + 30] ^= 0x40
    commands: list[int] = []
    plain: list[PlainRecord] = []
    end, next_seq, stop = RecordDecoder(RECORD_V2).decode_span(
        bytes(blob), 0, 1, sink=lambda s, t, cmd: commands.append(s), batch_sink=plain.extend,
    )
    assert stop is not None and stop.reason == STOP_BAD_CRC and stop.offset == damaged_at
    assert (end, next_seq) == (damaged_at, 8)
    assert commands[0] == 1 and commands + [r[0] for r in plain] == list(range(1, 8))


def test_numbers_beyond_64_bits_are_refused_before_the_symbol_table_changes() -> None:
    symbols: dict[str, int] = {}
    huge = c.PlaceOrder("BTC-JPY", 1, Side.BUY, 2**70, 100)
    with pytest.raises(UnjournalableCommandError, match="seq 5"):
        encode_record(5, 1, huge, symbols)
    assert symbols == {}


def test_a_wrongly_typed_field_is_refused_instead_of_failing_on_replay() -> None:
    bad = c.PlaceOrder("BTC-JPY", 1, "sideways", 1, 100)  # type: ignore[arg-type]
    with pytest.raises(UnjournalableCommandError, match="wrong type"):
        encode_record(1, 1, bad, {})


@settings(max_examples=60, deadline=None)
@given(command=any_command, data=st.data(), version=st.sampled_from(RECORD_VERSIONS))
def test_any_flipped_byte_makes_the_record_unreadable(
    command: c.Command, data: st.DataObject, version: int
) -> None:
    record = bytearray(encode_record(1, 1, command, {}, version))
    index = data.draw(st.integers(0, len(record) - 1))
    record[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ValueError, match="not one valid record"):
        decode_record(bytes(record), version)


@settings(max_examples=200, deadline=None)
@given(commands=st.lists(any_command, min_size=1, max_size=12))
@example(
    commands=[
        c.PlaceOrder("BTC-JPY", 1, Side.BUY, 1, 100),
        c.PlaceOrder("BTC-JPY", 2, Side.SELL, 3, 101),  # the plain-limit fast path
        c.PlaceOrder("BTC-JPY", 2, Side.SELL, 3, 0, OrderType.MARKET, TimeInForce.IOC),
        c.CancelOrder("BTC-JPY", 2, order_id=2),  # the cancel fast path
        c.PlaceOrder("BTC-JPY", 2, Side.SELL, 2**63, 101),  # too big for the fixed layout
    ]
)
def test_the_batch_encoders_fast_paths_write_the_same_bytes_as_the_general_encoder(
    commands: list[c.Command],
) -> None:
    encoder = BatchEncoder(last_seq=0, last_ts=0)
    symbols: dict[str, int] = {}
    expected = []
    for seq, command in enumerate(commands, 1):
        expected.append(encode_record(seq, 1000 + seq, command, symbols))
        encoder.append(seq, 1000 + seq, command)
    assert encoder.take() == b"".join(expected)
    assert encoder.symbols == symbols
    assert encoder.take() == b""


def test_the_batch_encoder_keeps_nothing_from_a_refused_append() -> None:
    encoder = BatchEncoder(last_seq=0, last_ts=0)
    encoder.append(1, 10, c.PlaceOrder("BTC-JPY", 1, Side.BUY, 1, 100))
    with pytest.raises(UnjournalableCommandError):
        encoder.append(2, 10, c.PlaceOrder("BTC-JPY", 1, Side.BUY, 2**70, 100))
    with pytest.raises(JournalSequenceError, match="gap-free"):
        encoder.append(3, 10, c.Heartbeat())
    with pytest.raises(JournalSequenceError, match="before the last ts"):
        encoder.append(2, 9, c.Heartbeat())
    encoder.append(2, 10, c.Heartbeat())
    assert [seq for seq, _, _ in _decode_all(encoder.take(), 1)] == [1, 2]


def test_a_command_can_be_checked_before_it_gets_a_sequence_number() -> None:
    check_journalable(c.PlaceOrder("BTC-JPY", 1, Side.BUY, 1, 100, client_order_id="ok"))
    with pytest.raises(UnjournalableCommandError, match="not valid Unicode"):
        check_journalable(c.PlaceOrder("BTC-JPY", 1, Side.BUY, 1, 100, client_order_id="\udc80"))
