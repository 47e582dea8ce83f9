"""Forwarding: every stored change of a call, on to the systems that act on it.

The store writes an event per change into the outbox (``store.schema.events``) in the same
transaction as the call; this package delivers them. ``destinations`` says what a URL means
and manages the destinations; ``events`` renders an event's JSON; ``sinks`` and ``brokers``
send one event to one kind of destination; ``deliverer`` runs the workers (leases, order per
call, retries, dead letters, pauses); ``history`` shows attempts and replays; ``filters`` is
the small filter language; ``schedule`` the retry schedule. It reads the store and the
reports' renderings and is used by the app, the API, the pages and the CLI.
"""

from cdrhub.forward import destinations, filters, history, schedule
from cdrhub.forward.deliverer import Deliverer, Tally, oldest_undelivered_ms
from cdrhub.forward.destinations import (
    EVENT_TYPES,
    Destination,
    DestinationError,
    masked_url,
)
from cdrhub.forward.events import Event, Renderer
from cdrhub.forward.filters import FilterError
from cdrhub.forward.history import forwarding_status
from cdrhub.forward.sinks import Result, sign

__all__ = [
    "EVENT_TYPES",
    "Deliverer",
    "Destination",
    "DestinationError",
    "Event",
    "FilterError",
    "Renderer",
    "Result",
    "Tally",
    "destinations",
    "filters",
    "forwarding_status",
    "history",
    "masked_url",
    "oldest_undelivered_ms",
    "schedule",
    "sign",
]
