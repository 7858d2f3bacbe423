"""The exceptions howto raises, so callers can tell failures apart, and how untrusted text
appears in their messages and on a terminal."""

import re


class HowtoError(Exception):
    """Base class for errors raised by howto."""


class IntegrityError(HowtoError):
    """Bytes that do not hash to the CID they were fetched or stored under, or blocks
    that hash right but contradict each other (a file node whose sizes its children do
    not bear out, a malformed node): either way, the DAG cannot be trusted as given."""


class NotFoundError(HowtoError, FileNotFoundError):
    """Absent: a block one source does not hold, or a name a directory does not hold.

    A ``FileNotFoundError``, so fsspec, zarr and intake treat it as a missing file (zarr
    reads an optional key that way).  A block that *no* source of a chain provides is an
    ``UnavailableError`` instead: nothing says that the data are absent.
    """


class PathNotFoundError(NotFoundError):
    """A name that a verified node (a directory, a HAMT shard, a DAG-CBOR map) does not
    hold: absent for certain, whoever is asked, since the node's CID fixes its links."""


class UnavailableError(HowtoError):
    """A block that no source could provide: not absent, only not to be had now.

    Deliberately neither a ``FileNotFoundError`` nor a ``KeyError``: zarr, xarray and
    intake take those for "no such key" and would read on (a missing group, fill values),
    so this one reaches the caller with its reason.  ``tried`` lists each source asked
    and what it said; ``remote`` is true when gateways were among them (a gateway serving
    from a chain without any answers 404, one that asked others 502, as the path gateway
    specification says).
    """

    tried: tuple[tuple[str, str], ...] = ()
    remote: bool = False


class GatewayError(HowtoError):
    """A gateway that could not be reached, timed out or answered with an error."""


class CatalogError(HowtoError, ValueError):
    """A catalog that cannot be built or opened; the message names the file and entry."""


class GatewayTimeout(GatewayError):
    """A gateway that did not answer in time (told apart from not-found).

    Deliberately not a ``TimeoutError``: fsspec's synchronous wrappers replace any
    ``TimeoutError`` with a bare ``FSTimeoutError``, which would lose the gateway and CID.
    """


class HashPolicyError(IntegrityError, ValueError):
    """A CID whose hash cannot prove its block: an insecure or unknown function, a digest
    too short or too long, or an identity CID too large (see ``howto.cids.check_cid``)."""


class PathNotSupportedError(HowtoError, ValueError):
    """A path that ends inside a DAG-CBOR or DAG-JSON block, on a value that is not a link
    (a map, a list, a string…): IPLD pathing only stops on blocks (HTTP 501 at a gateway)."""


class IpnsError(HowtoError, ValueError):
    """An IPNS record that cannot be trusted: unsigned (V2), badly signed, expired, its
    copies disagreeing, for another name, or not a record at all."""


class UnverifiedDataWarning(UserWarning):
    """A catalog opened with ``verified_only=False`` whose location-addressed entries will
    be read as their servers send them, with nothing checked against a CID."""


#: Characters a terminal acts on rather than shows (C0 and C1 controls, DEL, line and
#: paragraph separators, bidirectional overrides and isolates).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: How many characters of untrusted input a message repeats.
SHOWN_CHARS = 200


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``,
    ``\\n``): a name from a DAG or a record cannot move the cursor, recolour the terminal
    or forge a line of output."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """Untrusted input as an error message may repeat it: ``repr`` for strings and bytes,
    control characters escaped, and cut to about ``limit`` characters (its start and end,
    and how long it was) so a huge CID or number is not echoed whole."""
    size = len(value) if isinstance(value, (str, bytes)) else None
    if size is not None and size > 4 * limit:
        value = value[: limit // 2] + value[-limit // 2 :]  # no repr of megabytes
    text = printable(repr(value) if size is not None else str(value))
    if len(text) <= limit and (size is None or size <= 4 * limit):
        return text
    half = limit // 2
    return f"{text[:half]}…({size or len(text)} long)…{text[-half:]}"


__all__ = [
    "CatalogError",
    "GatewayError",
    "GatewayTimeout",
    "HashPolicyError",
    "HowtoError",
    "IpnsError",
    "IntegrityError",
    "NotFoundError",
    "PathNotFoundError",
    "PathNotSupportedError",
    "UnverifiedDataWarning",
    "SHOWN_CHARS",
    "printable",
    "shown",
    "UnavailableError",
]
