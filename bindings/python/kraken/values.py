"""Values between Python and libkraken: text forms on the C side, native types here.

enum -> member name (str), IPv4/MAC -> str, UUID -> uuid.UUID, bytes -> bytes,
records/maps/lists -> dict/list (their JSON form), numbers -> int, bool -> bool.
"""

import base64
import enum
import json
import uuid

from . import core

_INTS = {core.KRAKEN_T_INT32, core.KRAKEN_T_INT64, core.KRAKEN_T_UINT32, core.KRAKEN_T_UINT64}
_JSON = {core.KRAKEN_T_RECORD, core.KRAKEN_T_MAP, core.KRAKEN_T_LIST}


def to_text(value) -> str:
    """The text form libkraken parses for a value of any URL type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if isinstance(value, uuid.UUID) or hasattr(value, "packed"):   # UUID, ipaddress objects
        return str(value)
    raise TypeError("kraken value: cannot use a %s (use str, int, bool, bytes, uuid.UUID, "
                    "dict or list)" % type(value).__name__)


def from_text(ktype: int, text):
    """A native value from the text form of a value of type ``ktype``."""
    if text is None:
        return None
    if ktype == core.KRAKEN_T_BOOL:
        return text == "true"
    if ktype in _INTS:
        return int(text)
    if ktype == core.KRAKEN_T_UUID:
        return uuid.UUID(text)
    if ktype == core.KRAKEN_T_BYTES:
        return base64.b64decode(text)
    if ktype in _JSON:
        return json.loads(text)
    return text          # string, enum name, dotted IPv4, colon MAC


def url_type(url: str) -> int:
    """The kraken_type of a URL, from the registered schemas."""
    return core.kb_url_type(url)


def id_text(node) -> str:
    """A node id given as uuid.UUID, str, or anything with an ``id`` (Node, Request)."""
    if isinstance(node, str):
        return node
    if isinstance(node, uuid.UUID):
        return str(node)
    inner = getattr(node, "id", None)
    if isinstance(inner, uuid.UUID):
        return str(inner)
    raise TypeError("node id: expected uuid.UUID, str or a Node, got %s" % type(node).__name__)


def lines(text):
    return text.split("\n") if text else []
