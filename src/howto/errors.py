"""The exceptions howto raises, so callers can tell failures apart."""


class HowtoError(Exception):
    """Base class for errors raised by howto."""


class IntegrityError(HowtoError):
    """Bytes that do not hash to the CID they were fetched or stored under."""


class NotFoundError(HowtoError, FileNotFoundError):
    """Content that no available source provides (a ``FileNotFoundError`` for fsspec)."""


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


__all__ = [
    "CatalogError",
    "GatewayError",
    "GatewayTimeout",
    "HashPolicyError",
    "HowtoError",
    "IpnsError",
    "IntegrityError",
    "NotFoundError",
    "PathNotSupportedError",
    "UnverifiedDataWarning",
]
