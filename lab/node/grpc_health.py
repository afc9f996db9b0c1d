"""The kubelet's gRPC readiness probe on the wire: one grpc.health.v1.Health/Check call over
cleartext HTTP/2 (prior knowledge, as the kubelet dials), encoded and decoded here without a gRPC
library. Pure: `request` gives the bytes to send, `Reply` reads what came back.

Only what a health check needs: HPACK literals without Huffman coding on the way out; on the way
back the DATA message carries the verdict (HealthCheckResponse.status), and the trailers'
grpc-status is read when the server did not Huffman-code it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
STREAM = 1
GRPC_CODES = {"5": "NOT_FOUND", "12": "UNIMPLEMENTED", "14": "UNAVAILABLE", "4": "DEADLINE_EXCEEDED"}
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
# HPACK's static table, the entries a gRPC reply's headers use (RFC 7541 appendix A)
_STATIC = {8: (":status", "200"), 13: (":status", "404"), 14: (":status", "500"), 31: ("content-type", "")}


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _string(text: str) -> bytes:
    raw = text.encode()
    return _integer(len(raw), 7, 0) + raw


def _integer(value: int, prefix: int, first: int) -> bytes:
    """HPACK's prefixed integer (RFC 7541 5.1); `first` carries the bits above the prefix."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    out, value = bytearray([first | limit]), value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + bytes([value]))


def request(authority: str, service: str = "") -> bytes:
    """Preface, SETTINGS, then HEADERS and DATA of one Health/Check on stream 1."""
    headers = (b"\x83\x86"                                         # :method POST, :scheme http (indexed)
               + _integer(4, 4, 0) + _string("/grpc.health.v1.Health/Check")
               + _integer(1, 4, 0) + _string(authority)
               + _integer(31, 4, 0) + _string("application/grpc")
               + b"\x00" + _string("te") + _string("trailers"))
    message = (b"\x0a" + _integer(len(service.encode()), 7, 0) + service.encode()) if service else b""
    return (PREFACE + frame(SETTINGS, 0, 0)
            + frame(HEADERS, END_HEADERS, STREAM, headers)
            + frame(DATA, END_STREAM, STREAM, b"\x00" + struct.pack(">I", len(message)) + message))


def _read_integer(block: bytes, i: int, prefix: int) -> tuple[int, int]:
    limit = (1 << prefix) - 1
    value, i = block[i] & limit, i + 1
    if value < limit:
        return value, i
    shift = 0
    while True:
        byte = block[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _read_string(block: bytes, i: int) -> tuple[Optional[str], int]:
    huffman = bool(block[i] & 0x80)
    length, i = _read_integer(block, i, 7)
    raw = block[i:i + length]
    return (None if huffman else raw.decode("latin-1")), i + length


def header_fields(block: bytes, table: list[tuple[str, Optional[str]]]) -> list[tuple[str, Optional[str]]]:
    """The fields of one header block; a Huffman-coded string reads as None. `table` is the
    connection's dynamic table (newest first), kept across blocks."""
    out, i = [], 0
    while i < len(block):
        byte = block[i]
        if byte & 0x80:                                # indexed field
            index, i = _read_integer(block, i, 7)
            out.append(_entry(index, table))
            continue
        if byte & 0xE0 == 0x20:                        # dynamic table size update
            _, i = _read_integer(block, i, 5)
            continue
        indexing = byte & 0xC0 == 0x40
        index, i = _read_integer(block, i, 6 if indexing else 4)
        if index:
            name: Optional[str] = _entry(index, table)[0]
        else:
            name, i = _read_string(block, i)
        value, i = _read_string(block, i)
        out.append((name or "", value))
        if indexing:
            table.insert(0, (name or "", value))
    return out


def _entry(index: int, table: list[tuple[str, Optional[str]]]) -> tuple[str, Optional[str]]:
    if index > 61:
        return table[index - 62] if index - 62 < len(table) else ("", None)
    return _STATIC.get(index, ("", None))


@dataclass
class Reply:
    """What the server sent on stream 1, fed frame by frame."""

    data: bytearray = field(default_factory=bytearray)
    fields: list[tuple[str, Optional[str]]] = field(default_factory=list)
    table: list[tuple[str, Optional[str]]] = field(default_factory=list)
    ended: bool = False
    reset: Optional[str] = None

    def feed(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == GOAWAY:
            self.reset, self.ended = "GOAWAY", True
        if stream != STREAM:
            return
        if kind in (DATA, HEADERS) and flags & PADDED:
            payload = payload[1:len(payload) - payload[0]]
        if kind == HEADERS:
            if flags & PRIORITY:
                payload = payload[5:]
            self.fields += header_fields(payload, self.table)
        elif kind == DATA:
            self.data += payload
        elif kind == RST_STREAM:
            self.reset, self.ended = f"RST_STREAM {struct.unpack('>I', payload[:4])[0]}", True
        if kind in (DATA, HEADERS) and flags & END_STREAM:
            self.ended = True

    def status(self) -> Optional[int]:
        """HealthCheckResponse.status (field 1, a varint), None when no message came."""
        if len(self.data) < 5:
            return None
        message = bytes(self.data[5:5 + struct.unpack(">I", self.data[1:5])[0]])
        i = 0
        while i < len(message):
            key, i = _varint(message, i)
            if key >> 3 == 1 and key & 7 == 0:
                return _varint(message, i)[0]
            if key & 7 == 0:
                i = _varint(message, i)[1]
            elif key & 7 == 2:
                length, i = _varint(message, i)
                i += length
            else:
                return None
        return 0  # proto3: a status left out is UNKNOWN (0)

    def verdict(self) -> tuple[bool, str]:
        """As the kubelet judges: ready only on SERVING; what came back, for `lab describe`."""
        grpc_status = dict(self.fields).get("grpc-status")
        if grpc_status not in (None, "0"):  # the call failed: a message sent beside it means nothing
            return False, f"grpc-status {grpc_status}{f' ({GRPC_CODES[grpc_status]})' if grpc_status in GRPC_CODES else ''}"
        status = self.status()
        if status is not None:
            word = SERVING_STATUS.get(status, f"status {status}")
            return status == 1, word
        if self.reset:
            return False, self.reset
        return False, "no HealthCheckResponse" + (" (grpc-status Huffman-coded)" if "grpc-status" in dict(self.fields)
                                                  else "")


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def frames(buffer: bytearray):
    """Complete frames at the head of buffer, consumed: (kind, flags, stream, payload)."""
    while len(buffer) >= 9:
        length = int.from_bytes(buffer[:3], "big")
        if len(buffer) < 9 + length:
            return
        kind, flags = buffer[3], buffer[4]
        stream = struct.unpack(">I", bytes(buffer[5:9]))[0] & 0x7FFFFFFF
        payload = bytes(buffer[9:9 + length])
        del buffer[:9 + length]
        yield kind, flags, stream, payload
