"""Times as reports show them: Japan time first (the exchange's home), UTC beside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

JST = timezone(timedelta(hours=9), "JST")


def jst_utc(moment: datetime | None, missing: str = "-") -> str:
    """``2025-01-06 18:30:05 JST (2025-01-06 09:30:05 UTC)``."""
    if moment is None:
        return missing
    utc = moment.astimezone(UTC)
    local = moment.astimezone(JST)
    return f"{local:%Y-%m-%d %H:%M:%S} JST ({utc:%Y-%m-%d %H:%M:%S} UTC)"


def jst_utc_ja(moment: datetime | None, missing: str = "未定") -> str:
    """``2025年01月06日 18時30分05秒(日本時間)/ 2025-01-06 09:30:05 UTC``."""
    if moment is None:
        return missing
    utc = moment.astimezone(UTC)
    local = moment.astimezone(JST)
    return f"{local:%Y年%m月%d日 %H時%M分%S秒}(日本時間)/ {utc:%Y-%m-%d %H:%M:%S} UTC"


def duration_text(seconds: float | None, missing: str = "ongoing") -> str:
    if seconds is None:
        return missing
    minutes_total = int(seconds // 60)
    hours, minutes = divmod(minutes_total, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {int(seconds % 60)} s" if minutes else f"{int(seconds)} s"


def duration_text_ja(seconds: float | None, missing: str = "継続中") -> str:
    if seconds is None:
        return missing
    minutes_total = int(seconds // 60)
    hours, minutes = divmod(minutes_total, 60)
    if hours:
        return f"{hours}時間{minutes}分"
    return f"{minutes}分{int(seconds % 60)}秒" if minutes else f"{int(seconds)}秒"
