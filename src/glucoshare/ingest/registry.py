"""Discover importers through the ``glucoshare.importers`` entry point and detect a file's format."""

from __future__ import annotations

import functools
import logging
from importlib.metadata import entry_points

from glucoshare.analytics.sources import RANK_AGGREGATOR, RANK_PRIMARY, RANK_RELAY, RANK_TYPED
from glucoshare.ingest.base import Importer, SourceText
from glucoshare.ingest.errors import UnknownFormatError

ENTRY_POINT_GROUP = "glucoshare.importers"

logger = logging.getLogger(__name__)

SOURCE_RANKS = {
    "dexcom_clarity": RANK_PRIMARY,
    "libreview": RANK_PRIMARY,
    "carelink": RANK_PRIMARY,
    "tandem_source": RANK_PRIMARY,
    "accuchek_smartpix": RANK_PRIMARY,
    "glooko": RANK_AGGREGATOR,
    "diasend": RANK_AGGREGATOR,
    "tidepool": RANK_AGGREGATOR,
    "tandem_tconnect": RANK_AGGREGATOR,
    "nightscout": RANK_RELAY,
    "xdrip": RANK_RELAY,
    "mysugr": RANK_RELAY,
    "glucoshare_csv": RANK_TYPED,
    "glucoshare_diary": RANK_TYPED,
    "nightscout_api": RANK_RELAY,
    "upload_api": RANK_RELAY,
}
"""How directly each built-in format carries a device's data (docs/formats/deduplication.md).

The device maker's own export wins over an aggregator, which wins over an app relay, which wins
over data typed in by hand; a plugin may declare ``source_rank`` on its importer class.
"""


def source_rank(format_name: str) -> int:
    """The rank of a format's data when the same readings arrive by several routes (lower wins)."""
    if format_name in SOURCE_RANKS:
        return SOURCE_RANKS[format_name]
    try:
        return int(getattr(get_importer(format_name), "source_rank", RANK_RELAY))
    except KeyError:
        return RANK_RELAY


@functools.cache
def importers() -> tuple[Importer, ...]:
    """Every registered importer, ordered by format name."""
    found: dict[str, Importer] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            importer: Importer = entry.load()()
        except Exception:  # a broken plugin must not take the other formats down
            logger.exception("importer plugin %s could not be loaded; it is skipped", entry.name)
            continue
        found[importer.format] = importer
    return tuple(found[name] for name in sorted(found))


def get_importer(format_name: str) -> Importer:
    """The importer of one format by name; ``KeyError`` when none is registered."""
    for importer in importers():
        if importer.format == format_name:
            return importer
    raise KeyError(format_name)


def detect_format(source: SourceText) -> Importer:
    """Return the importer that recognises ``source`` from its content.

    Raises :class:`UnknownFormatError` naming the formats Glucoshare reads when none does.
    """
    head = source.head()
    for importer in importers():
        try:
            recognised = importer.detect(head)
        except Exception as exc:  # noqa: BLE001 - one faulty detector must not block the others
            logger.warning(
                "importer %s failed to inspect a file (%s); taken as not its format",
                importer.format,
                type(exc).__name__,
            )
            continue
        if recognised:
            return importer
    known = ", ".join(f"{i.label} ({i.format})" for i in importers())
    msg = f"{source.name}: unrecognised format; Glucoshare reads: {known}"
    raise UnknownFormatError(msg)
