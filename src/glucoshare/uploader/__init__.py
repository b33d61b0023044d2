"""The command-line uploader: device exports read on this machine, sent to a Glucoshare server.

``glucoshare upload`` (docs/cli.md) is a thin command over this package: :mod:`.plan` reads the
files as an import would and readies their records for the upload API, :mod:`.client` speaks the
API (docs/upload-api.md) with retries, :mod:`.send` decides what to send and resumes interrupted
uploads, :mod:`.watch` watches a folder for new exports.
"""

from __future__ import annotations

from glucoshare.uploader.client import ServerUnavailableError, UploadClient, check_server
from glucoshare.uploader.plan import Source, device_key, prepare, read_records, sendable
from glucoshare.uploader.send import DatasetReport, FileReport, Uploader
from glucoshare.uploader.watch import FolderWatch, watch_folder

__all__ = [
    "DatasetReport",
    "FileReport",
    "FolderWatch",
    "ServerUnavailableError",
    "Source",
    "UploadClient",
    "Uploader",
    "check_server",
    "device_key",
    "prepare",
    "read_records",
    "sendable",
    "watch_folder",
]
