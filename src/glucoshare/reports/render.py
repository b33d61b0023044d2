"""Reports as HTML (a whole page, or the body for the web app's pages) and as PDF (WeasyPrint).

The PDF is printed from the same HTML with print styles (A4; the daily view in landscape) and
page numbers; charts are SVG, so they stay crisp when printed.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from markupsafe import Markup

from glucoshare.reports.views import Report
from glucoshare.templating import templates

STYLESHEET = "report.css"
"""The reports' style sheet in ``glucoshare/reports/static`` (served at ``/static/reports/``)."""


@cache
def report_css() -> str:
    """The reports' style sheet (screen and print)."""
    return (resources.files("glucoshare.reports") / "static" / STYLESHEET).read_text(encoding="utf-8")


def _page_css(report: Report) -> str:
    """Paper, margins and the running footer of the printed report (page numbers)."""
    footer = f"{report.header.title} · {report.header.period}".replace("\\", "").replace('"', "'")
    orientation = "landscape" if report.landscape else "portrait"
    wide = ".report{max-width:none !important}" if report.landscape else ""
    return (
        f"@page{{size:A4 {orientation};margin:10mm 10mm 12mm;"
        f'@bottom-left{{content:"{footer}";font-size:7.5pt;color:#666}}'
        '@bottom-right{content:"page " counter(page) " of " counter(pages);font-size:7.5pt;color:#666}}'
        f"{wide}"
    )


def render_body(report: Report) -> Markup:
    """The report as an ``<article>`` to place inside another page (with :data:`STYLESHEET`)."""
    return Markup(templates("glucoshare.reports").get_template("report_body.html").render(report=report))  # noqa: S704 - autoescaped template


def render_html(report: Report, *, stylesheet_href: str | None = None) -> str:
    """The report as a whole HTML document: styles inline, or linked from ``stylesheet_href``.

    Link them for pages served under a Content-Security-Policy without inline styles; inline them
    for a file opened on its own.
    """
    return (
        templates("glucoshare.reports")
        .get_template("report.html")
        .render(
            report=report,
            css=Markup(report_css()),  # noqa: S704 - our own file
            stylesheet_href=stylesheet_href,
        )
    )


def render_pdf(report: Report) -> bytes:
    """The report as a PDF document (A4; the daily view in landscape)."""
    import weasyprint  # noqa: PLC0415 - loads Pango and fonts: only when a PDF is made

    sheets = [weasyprint.CSS(string=_page_css(report))]
    pdf: bytes = weasyprint.HTML(string=render_html(report)).write_pdf(stylesheets=sheets)
    return pdf
