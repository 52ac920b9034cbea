"""Small text helpers: headers, query strings, URL encoding, bounded and scrubbed vendor text.

Written out rather than taken from `urllib.parse` to keep the component's import set small and
explicit (componentize-py bundles only what is imported at build time).
"""

# Bytes kept as they are by application/x-www-form-urlencoded serialization (WHATWG URL standard,
# the same set as Rust's `form_urlencoded`, which the Rust connectors use).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")


def header(headers, name):
    """The value of header `name` (case-insensitive), or None."""
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def urlencode(value):
    """`value` encoded for a query string: space is `+`, other reserved bytes `%XX`."""
    out = []
    for byte in value.encode("utf-8"):
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _percent_decode(text):
    """Form decoding: `+` is a space, `%XX` a byte; malformed escapes stay as they are."""
    raw = text.replace("+", " ").encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        pair = raw[i + 1:i + 3]
        if raw[i] == 0x25 and len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
            out.append(int(pair.decode("ascii"), 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def query_param(query, name):
    """The decoded value of parameter `name` in a raw query string (first wins), or None."""
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if _percent_decode(key) == name:
            return _percent_decode(value)
    return None


def first_non_empty(values):
    """The first value that is not blank, trimmed, or None."""
    for value in values:
        if value.strip():
            return value.strip()
    return None


def truncate(text, limit):
    """`text` cut to at most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + "\u2026"


def redact(text, secret):
    """`text` with every occurrence of `secret` replaced (vendor text might echo a credential)."""
    return text.replace(secret, "[redacted]") if secret else text
