"""Help where people get stuck: how to get each vendor's data into Glucoshare, and a handout for clinics.

One guide per system people use. A guide says plainly whether Glucoshare reads that system's data
today or not yet, so nobody uploads a file that will be refused. Menu names are the vendors' own;
they move between releases, so the guides name what to look for rather than every click.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from glucoshare.errors import NotFoundError
from glucoshare.web.deps import settings_of, unit_of_work
from glucoshare.web.ui.pages import render, viewer_of

router = APIRouter(include_in_schema=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Guide:
    """How to bring one system's data into Glucoshare."""

    slug: str
    title: str
    devices: str
    supported: bool
    steps: tuple[str, ...]
    file: str
    """What the file looks like, so people pick the right one."""
    formats: tuple[str, ...] = ()
    """The importer formats (CONTRACT.md) the guide leads to; a test keeps ``supported`` in step."""


GUIDES: tuple[Guide, ...] = (
    Guide(
        "dexcom-clarity",
        "Dexcom Clarity",
        "Dexcom G6, G7 and ONE, with the Dexcom app or a receiver",
        supported=True,
        steps=(
            "Sign in to Dexcom Clarity in a web browser on a computer (clarity.dexcom.com).",
            (
                "Choose the period you want (up to 90 days at a time), then use the Export button near the "
                "top of the page and confirm the export."
            ),
            "Your browser saves a CSV file. Upload that file on your Glucoshare dashboard, as it is.",
        ),
        file="A file named like Clarity_Export_Lastname_Firstname_2026-11-20_093000.csv.",
        formats=("dexcom_clarity",),
    ),
    Guide(
        "libreview",
        "Abbott LibreView",
        "FreeStyle Libre 1, 2 and 3, with the LibreLink app or a reader",
        supported=True,
        steps=(
            (
                "Sign in to LibreView in a web browser (libreview.com) with the account your LibreLink app "
                "or reader uploads to."
            ),
            "Open the glucose history and look for 'Download glucose data'; confirm the download.",
            (
                "Upload the CSV file on your Glucoshare dashboard. It holds all your sensors; Glucoshare "
                "keeps each reading once, however often you upload."
            ),
        ),
        file="A file named like AnnaExample_glucose_20-11-2026.csv.",
        formats=("libreview",),
    ),
    Guide(
        "carelink",
        "Medtronic CareLink",
        "MiniMed 670G, 770G and 780G pumps, Guardian sensors, Simplera",
        supported=True,
        steps=(
            (
                "Make sure your pump has synced to CareLink (the MiniMed Mobile app does it by itself; "
                "otherwise upload the pump in CareLink with the blue adapter)."
            ),
            (
                "Sign in to CareLink Personal in a web browser, open Reports and choose the data export "
                "(CSV) for the dates you want."
            ),
            (
                "Upload the CSV file on your Glucoshare dashboard: pump, sensor, boluses, basal and the "
                "bolus calculator's settings all come with it."
            ),
        ),
        file="A CSV file that starts with your name and the pump's serial number in its first lines.",
        formats=("carelink",),
    ),
    Guide(
        "tandem-source",
        "Tandem Source",
        "t:slim X2 and Mobi pumps",
        supported=False,
        steps=(
            "Glucoshare does not read Tandem Source exports yet; support is being built.",
            (
                "Until then, if your Dexcom sensor is paired with the Dexcom app, upload your Dexcom "
                "Clarity export for your glucose data."
            ),
        ),
        file="The export is a set of CSV files (one per data type), usually in a ZIP file.",
        formats=("tandem_source",),
    ),
    Guide(
        "glooko",
        "Glooko (and diasend)",
        "Omnipod 5, Eversense and many meters and pumps that upload to Glooko",
        supported=False,
        steps=(
            "Glucoshare does not read Glooko exports yet; support is being built.",
            (
                "For Eversense, there is no public export Glucoshare can read today: Eversense data will "
                "come through Glooko once Glucoshare reads it."
            ),
        ),
        file="Glooko's export is a ZIP file of CSV files.",
        formats=("glooko",),
    ),
    Guide(
        "mysugr",
        "mySugr",
        "the mySugr app with Accu-Chek meters",
        supported=False,
        steps=("Glucoshare does not read mySugr exports yet; support is being built.",),
        file="The app's export is a CSV file.",
        formats=("mysugr",),
    ),
    Guide(
        "accu-chek",
        "Accu-Chek (Smart Pix)",
        "Accu-Chek meters read with the Smart Pix device reader",
        supported=False,
        steps=("Glucoshare does not read Smart Pix files yet; support is being built.",),
        file="Smart Pix writes an XML file per device.",
        formats=("accuchek_smartpix",),
    ),
    Guide(
        "xdrip",
        "xDrip+",
        "xDrip+ on Android with Dexcom or Libre sensors",
        supported=False,
        steps=(
            (
                "Glucoshare does not take xDrip+ data yet. It will accept xDrip+'s CSV export and "
                "xDrip+'s Nightscout upload (point xDrip+ at Glucoshare's address with a token)."
            ),
        ),
        file="xDrip+ exports a ZIP file holding one CSV file.",
        formats=("xdrip",),
    ),
    Guide(
        "nightscout-apps",
        "Loop, Trio, AndroidAPS and other Nightscout apps",
        "automated insulin delivery apps and uploaders that speak Nightscout's API",
        supported=False,
        steps=(
            (
                "Glucoshare's Nightscout-compatible API is being built. These apps will then upload to "
                "Glucoshare unchanged: you give them Glucoshare's address and a token made for them."
            ),
        ),
        file="No file: the app uploads by itself.",
        formats=("nightscout",),
    ),
)


@router.get("/help", response_class=HTMLResponse)
def help_index(request: Request) -> Response:
    """Every guide, and the handout for clinics."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        return render(request, "help.html", viewer=None if found is None else found[1], guides=GUIDES)


@router.get("/help/handout", response_class=HTMLResponse)
def handout(request: Request, clinic: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    """A one-page handout a clinic gives patients before a visit (its share code when a member asks)."""
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        code = None
        if clinic is not None:
            member = None if found is None else next((c for c in found[1].clinics if c.id == clinic), None)
            if member is None:
                raise NotFoundError("no such clinic, or not yours")
            code = member.share_code
        return render(
            request,
            "handout.html",
            viewer=None,
            guides=[g for g in GUIDES if g.supported],
            code=code,
            base_url=settings_of(request).base_url,
        )


@router.get("/help/{slug}", response_class=HTMLResponse)
def guide(request: Request, slug: str) -> Response:
    """One system's guide."""
    chosen = next((g for g in GUIDES if g.slug == slug), None)
    if chosen is None:
        raise NotFoundError("there is no guide with this name")
    with unit_of_work(request) as session:
        found = viewer_of(request, session)
        return render(request, "guide.html", viewer=None if found is None else found[1], guide=chosen)
