"""QR codes for second-factor enrolment, as SVG (segno; no image libraries, nothing inline to run)."""

from __future__ import annotations

import io

import segno


def qr_svg(text: str) -> str:
    """``text`` as a QR code in an SVG document (error correction M, 4 px modules)."""
    buffer = io.BytesIO()
    segno.make(text, error="m", micro=False).save(
        buffer,
        kind="svg",
        scale=4,
        border=4,
        xmldecl=False,
        svgns=True,
        title="QR code for your authenticator app",
    )
    return buffer.getvalue().decode()
