"""Native Python clients for the pyxos key-value service."""

from pyxos.client.client import (
    AsyncClient,
    Client,
    ClientError,
    ResponseError,
    UnavailableError,
    UnknownOutcomeError,
)

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "ResponseError",
    "UnavailableError",
    "UnknownOutcomeError",
]
