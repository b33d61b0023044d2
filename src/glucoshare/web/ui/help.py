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
from glucoshare.ingest.glucoshare_csv import template_bytes
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
        "t:slim X2 and Mobi pumps, with the CGM paired to the pump",
        supported=True,
        steps=(
            (
                "Sign in to Tandem Source in a web browser (source.tandemdiabetes.com) and make sure your "
                "pump has uploaded recently (the mobile app does it by itself)."
            ),
            (
                "Open your data and choose the export of your records as CSV for the dates you want; "
                "Tandem Source saves a ZIP file holding one CSV file per kind of data (CGM, BG, Bolus, "
                "basal doses, hourly basal)."
            ),
            (
                "Upload the ZIP file as it is on your Glucoshare dashboard (or all of its CSV files at "
                "once). Files from the old t:connect web site are read too."
            ),
        ),
        file="A ZIP file, or CSV files named like LASTNAME_1234567_05Mar2026_0930-CGM.csv.",
        formats=("tandem_source", "tandem_tconnect"),
    ),
    Guide(
        "glooko",
        "Glooko (and diasend)",
        "Omnipod 5 and DASH, Eversense, and the many meters and pumps that upload to Glooko",
        supported=True,
        steps=(
            "Sign in to Glooko in a web browser (my.glooko.com) with the account your devices upload to.",
            (
                "Use the export of your data as CSV (look for 'Export to CSV' near the reports), choose "
                "the dates, and save the ZIP file Glooko makes."
            ),
            (
                "Upload the ZIP file as it is: glucose, insulin, carbohydrates, notes and alarms come "
                "with it, in English or German. An old diasend export (an Excel .xls file) is read too."
            ),
        ),
        file="A ZIP file with folders such as 'Insulin data' and files such as cgm_data_1.csv.",
        formats=("glooko", "diasend"),
    ),
    Guide(
        "eversense",
        "Eversense",
        "Eversense E3 and 365 implantable sensors",
        supported=True,
        steps=(
            (
                "Eversense's own site (Eversense DMS) gives PDF reports only, which no software can read "
                "back. Share your Eversense data with Glooko in the Eversense app, then follow the Glooko "
                "guide: the readings come in Glooko's export."
            ),
            (
                "If your readings are in another tool, copy them into Glucoshare's spreadsheet template "
                "(see 'Other devices') and upload that file."
            ),
        ),
        file="Glooko's ZIP file, or the filled-in Glucoshare template.",
        formats=("glooko", "glucoshare_csv"),
    ),
    Guide(
        "mysugr",
        "mySugr",
        "the mySugr app with Accu-Chek meters and pens",
        supported=True,
        steps=(
            (
                "In the mySugr app, open the menu and look for the data export; choose CSV and the period "
                "you want. The app saves or e-mails a CSV file."
            ),
            (
                "Upload that file, English or German. Blood glucose, insulin, carbohydrates (bread units "
                "are turned into grams), activity and notes come with it; your location never does."
            ),
        ),
        file="A CSV file whose first line starts with Date,Time,Tags (or Datum,Zeit,Tags).",
        formats=("mysugr",),
    ),
    Guide(
        "accu-chek",
        "Accu-Chek (Smart Pix)",
        "Accu-Chek meters (and Accu-Chek pumps) read with the Smart Pix device reader",
        supported=True,
        steps=(
            "Read your meter with the Accu-Chek Smart Pix reader as usual.",
            (
                "On the drive the Smart Pix shows on your computer, open the reports folder and take the "
                "XML file of your meter (not the HTML page)."
            ),
            "Upload the XML file. Control-solution tests are recognised and left out.",
        ),
        file="An XML file named after the meter, next to the HTML report.",
        formats=("accuchek_smartpix",),
    ),
    Guide(
        "xdrip",
        "xDrip+",
        "xDrip+ on Android with Dexcom, Libre or other sensors",
        supported=True,
        steps=(
            (
                "In xDrip+, open the menu, choose the import/export features and 'Export CSV (SiDiary)'. "
                "xDrip+ writes a ZIP file to the phone's storage."
            ),
            "Copy the ZIP file to your computer (or share it from the phone) and upload it as it is.",
        ),
        file="A ZIP file named like exportCSV20260514-192000.zip holding one CSV file.",
        formats=("xdrip",),
    ),
    Guide(
        "nightscout-apps",
        "Nightscout, Loop, Trio, AndroidAPS",
        "a Nightscout site and the apps that upload to it",
        supported=True,
        steps=(
            (
                "Glucoshare reads what your Nightscout site holds: save its entries, treatments and "
                "profile as JSON from the site's API (for example /api/v1/entries.json?count=100000 with "
                "your token) and upload the JSON files."
            ),
            (
                "Uploading directly from Loop, Trio, AndroidAPS or xDrip+ to Glucoshare, with Glucoshare's "
                "address and a token in place of your Nightscout site, is being built."
            ),
        ),
        file="JSON files saved from your Nightscout site.",
        formats=("nightscout",),
    ),
    Guide(
        "tidepool",
        "Tidepool",
        "data you keep in a Tidepool account",
        supported=True,
        steps=(
            "Sign in to Tidepool in a web browser and open your data.",
            "Export it, choosing JSON rather than Excel, for up to 90 days at a time.",
            "Upload the JSON file: every device Tidepool holds for you comes with it.",
        ),
        file="A JSON file.",
        formats=("tidepool",),
    ),
    Guide(
        "other-devices",
        "Other devices: Glucoshare's template",
        "any device or tool Glucoshare does not read yet",
        supported=True,
        steps=(
            (
                "Download Glucoshare's template (below) and open it in a spreadsheet program. Each row is "
                "one reading, dose, meal or note, with its time, type, value and unit."
            ),
            "Copy your data into it, keep the first lines as they are, and save it as CSV.",
            "Upload the CSV file. A row that cannot be read is shown with its line number and the reason.",
        ),
        file="The template, filled in and saved as CSV (docs: generic CSV format).",
        formats=("glucoshare_csv",),
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


@router.get("/help/glucoshare-template.csv")
def csv_template() -> Response:
    """The generic CSV template (docs/formats/generic-csv.md), to fill in for any device."""
    return Response(
        template_bytes(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="glucoshare-template.csv"'},
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
