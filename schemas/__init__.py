"""The Avro contracts (``*.avsc``) and the one codec that reads and writes them."""

from __future__ import annotations

from schemas.codec import Codec, CodecError, decode, default_codec, encode, fingerprint

__all__ = ["Codec", "CodecError", "decode", "default_codec", "encode", "fingerprint"]
