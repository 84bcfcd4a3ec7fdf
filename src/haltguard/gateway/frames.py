"""Length-prefixed frames, the wire unit of the streaming order entry and the request
channel: a 4-byte big-endian length, then that many bytes."""

from __future__ import annotations

import struct
import sys

FRAME_HEADER = struct.Struct(">I")


def take_frames(buffer: bytearray, frame_bytes_max: int,
                count_max: int = sys.maxsize) -> tuple[list[bytes], int | None]:
    """Cut the whole frames at the front of ``buffer`` off it, at most ``count_max``.

    Stops at a frame announced longer than ``frame_bytes_max`` and returns its length as the
    second value (None otherwise): the frames before it are returned, the caller decides
    what becomes of the connection. An incomplete frame stays in the buffer.
    """
    frames: list[bytes] = []
    header_size = FRAME_HEADER.size
    offset = 0
    too_long = None
    end_of_data = len(buffer)
    while len(frames) < count_max and end_of_data - offset >= header_size:
        (length,) = FRAME_HEADER.unpack_from(buffer, offset)
        if length > frame_bytes_max:
            too_long = length
            break
        end = offset + header_size + length
        if end > end_of_data:
            break
        frames.append(bytes(buffer[offset + header_size:end]))
        offset = end
    if offset:
        del buffer[:offset]
    return frames, too_long
