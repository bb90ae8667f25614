"""credentials.csv, handouts.pdf and the instructor's sheet: the last stage of a provision.

Everything here is pure rendering from a list of :class:`Card`; nothing talks to AWS.
Every file written here holds passwords, so every file is created with mode 0600 and
replaced atomically (a crash never leaves half a sheet, nor a moment when it is readable
by others).

Fonts: card text is set in DejaVu Sans when it can be found (Debian: fonts-dejavu-core),
so names like "João", "Zoë" or "Łukasz" print; otherwise Helvetica, which covers Western
European names only. A name that the main font cannot draw (Chinese, say) is set in any
installed TrueType font that fontconfig says covers it. Passwords are always Courier-Bold:
a plain monospace face, so every character has its own, unmistakable box.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import qrcode
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

from labkit.errors import InputError
from labkit.files import write_private

__all__ = [
    "CREDENTIAL_FIELDS",
    "CARDS_PER_PAGE",
    "Card",
    "write_credentials_csv",
    "render_handouts_pdf",
    "render_instructor_sheet_pdf",
]

# Exactly the header the contract promises for credentials.csv, in its order.
CREDENTIAL_FIELDS = (
    "seat", "student_id", "name", "email", "region", "host", "username", "password",
    "instance_id", "cluster_id", "host_key_sha256",
)

PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": A4, "letter": letter}

# Two columns by four rows fits both A4 and US Letter with 10 mm margins, which every
# common office printer can print, and leaves each card big enough for a 20 pt password.
CARD_COLUMNS = 2
CARD_ROWS = 4
CARDS_PER_PAGE = CARD_COLUMNS * CARD_ROWS

FINGERPRINT_NOTE = "ssh will show this fingerprint the first time; it must match"


@dataclass(frozen=True)
class Card:
    """What one student needs to log in; one card per student (students sharing a seat
    get one card each, with the same seat details)."""

    seat: str
    student_id: str
    name: str
    email: str
    region: str
    host: str
    username: str
    password: str
    instance_id: str
    cluster_id: str
    host_key_sha256: str  # "SHA256:..." exactly as `ssh-keygen -lf` prints it
    ssh_command: str  # ready to type, e.g. "ssh ubuntu@54.1.2.3"

    @property
    def login_uri(self) -> str:
        """What the card's QR code holds: an ssh:// URI that phone SSH clients open."""
        return f"ssh://{self.username}@{self.host}"


# ---------------------------------------------------------------------------------------
# Private files


# ---------------------------------------------------------------------------------------
# credentials.csv


def _spreadsheet_safe(text: str) -> str:
    """A roster name like ``=HYPERLINK(...)`` must stay text when the sheet is opened in a
    spreadsheet program: a leading quote keeps it from becoming a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_credentials_csv(path: Path, cards: Sequence[Card]) -> None:
    """Write credentials.csv: the contract's header, then one row per card, in order.

    UTF-8 without a byte-order mark (the header must read exactly ``seat,...``); fields
    are quoted as RFC 4180 says when they hold a comma, a quote or a line break.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CREDENTIAL_FIELDS)
    for card in cards:
        writer.writerow([_spreadsheet_safe(str(getattr(card, field)))
                         if field in ("name", "email") else getattr(card, field)
                         for field in CREDENTIAL_FIELDS])
    write_private(path, buffer.getvalue().encode("utf-8"))


# ---------------------------------------------------------------------------------------
# Fonts

_FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Ubuntu (fonts-dejavu-core)
    "/usr/share/fonts/dejavu-sans-fonts",  # Fedora
    "/usr/share/fonts/dejavu-sans-mono-fonts",  # Fedora
    "/usr/share/fonts/dejavu",  # openSUSE, Alpine
    "/usr/share/fonts/TTF",  # Arch
    "/usr/local/share/fonts/dejavu",  # FreeBSD
)


@dataclass(frozen=True)
class _Fonts:
    sans: str
    bold: str
    mono: str
    mono_bold: str  # also the password's face
    unicode: bool  # False when the sans faces are Helvetica (Western European only)


def _find_font_file(filename: str) -> str | None:
    candidates = [Path(__file__).parent / "data" / filename]
    candidates += [Path(d) / filename for d in _FONT_DIRS]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


def _register_ttf(name: str, filename: str) -> bool:
    if name in pdfmetrics.getRegisteredFontNames():
        return True
    found = _find_font_file(filename)
    if found is None:
        return False
    try:
        pdfmetrics.registerFont(TTFont(name, found))
    except Exception:  # a broken or CFF-flavoured file: reportlab cannot embed it
        return False
    return True


@functools.cache
def _fonts() -> _Fonts:
    sans_ok = (_register_ttf("labkit-Sans", "DejaVuSans.ttf")
               and _register_ttf("labkit-Sans-Bold", "DejaVuSans-Bold.ttf"))
    mono_ok = (_register_ttf("labkit-Mono", "DejaVuSansMono.ttf")
               and _register_ttf("labkit-Mono-Bold", "DejaVuSansMono-Bold.ttf"))
    return _Fonts(
        sans="labkit-Sans" if sans_ok else "Helvetica",
        bold="labkit-Sans-Bold" if sans_ok else "Helvetica-Bold",
        mono="labkit-Mono" if mono_ok else "Courier",
        mono_bold="labkit-Mono-Bold" if mono_ok else "Courier-Bold",
        unicode=sans_ok,
    )




def _covers(font_name: str, text: str) -> bool:
    font = pdfmetrics.getFont(font_name)
    face = getattr(font, "face", None)
    if face is not None and hasattr(face, "charToGlyph"):
        glyphs = face.charToGlyph
        return all(ord(ch) in glyphs or ch.isspace() for ch in text)
    try:  # a standard Type 1 font: whatever the Windows-1252 encoding holds
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def _fallback_font(missing: str) -> str | None:
    """A registered font that covers every character of ``missing``, found by fontconfig."""
    if shutil.which("fc-list") is None:
        return None
    charset = " ".join(f"{ord(ch):x}" for ch in sorted(set(missing)))
    try:
        listed = subprocess.run(
            ["fc-list", f":charset={charset}", "file"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in sorted(listed.splitlines()):
        filename = line.strip().rstrip(":").strip()
        if not filename.lower().endswith((".ttf", ".ttc")):
            continue
        name = "labkit-fallback-" + Path(filename).stem
        try:
            if name not in pdfmetrics.getRegisteredFontNames():
                pdfmetrics.registerFont(TTFont(name, filename))
        except Exception:  # CFF outlines and other faces reportlab cannot embed
            continue
        if _covers(name, missing):
            return name
    return None


def _font_for(text: str, preferred: str) -> str:
    """``preferred`` if it can draw ``text``, else an installed font that can."""
    if _covers(preferred, text):
        return preferred
    missing = "".join(ch for ch in text if not _covers(preferred, ch))
    return _fallback_font(missing) or preferred


# ---------------------------------------------------------------------------------------
# Fitting text into a box


def _width(text: str, font: str, size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


def _wrap(text: str, font: str, size: float, width: float, *, words: bool) -> list[str]:
    """Break ``text`` into lines no wider than ``width``: at spaces when ``words``, and
    inside a word only when the word alone is too wide."""
    tokens = text.split(" ") if words else [text]
    lines: list[str] = []
    line = ""
    for token in tokens:
        candidate = f"{line} {token}" if line else token
        if _width(candidate, font, size) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
            line = ""
        while _width(token, font, size) > width and len(token) > 1:
            cut = len(token) - 1
            while cut > 1 and _width(token[:cut], font, size) > width:
                cut -= 1
            lines.append(token[:cut])
            token = token[cut:]
        line = token
    if line or not lines:
        lines.append(line)
    return lines


@dataclass(frozen=True)
class _Fit:
    size: float
    lines: list[str]


def _fit(text: str, font: str, width: float, tries: Sequence[tuple[int, float, float]],
         *, words: bool = True) -> _Fit:
    """The first (max_lines, largest size, smallest size) try in which ``text`` fits.

    Sizes go down in half points. If nothing fits, the last try's smallest size is used
    and the last line ends in an ellipsis: overflow never leaves the card.
    """
    for max_lines, largest, smallest in tries:
        size = largest
        while size >= smallest - 1e-9:
            lines = _wrap(text, font, size, width, words=words)
            if len(lines) <= max_lines:
                return _Fit(size, lines)
            size -= 0.5
    max_lines, _, smallest = tries[-1]
    lines = _wrap(text, font, smallest, width, words=words)[:max_lines]
    last = lines[-1]
    while last and _width(last + "…", font, smallest) > width:
        last = last[:-1]
    lines[-1] = last + "…"
    return _Fit(smallest, lines)


# ---------------------------------------------------------------------------------------
# handouts.pdf

GREY_TEXT = colors.Color(0.38, 0.38, 0.38)
CUT_LINE = colors.Color(0.55, 0.55, 0.55)
PASSWORD_BOX = colors.Color(0.94, 0.94, 0.94)

MARGIN_SIDE = 10 * mm
MARGIN_TOP = 10 * mm
MARGIN_BOTTOM = 14 * mm  # room for the footer, which sits 7 mm from the edge
CARD_PADDING = 3 * mm
QR_SIZE = 20 * mm
LABEL_SIZE = 6.5
LABEL_WIDTH = 12 * mm


def _page_size(page_size: str) -> tuple[float, float]:
    try:
        return PAGE_SIZES[page_size]
    except KeyError:
        raise InputError(f"unknown page size {page_size!r}",
                         hint="use " + " or ".join(PAGE_SIZES)) from None


def _session_title(session: str, course_title: str) -> str:
    course_title = _one_line(course_title)
    return f"{course_title} · {session}" if course_title else f"session {session}"


def _one_line(text: str) -> str:
    """A roster name may hold a line break or a tab; on a card it reads as one space."""
    return " ".join(text.split())


def _draw_qr(c: Canvas, data: str, x: float, y: float, size: float) -> None:
    """A QR code as one vector path (so no seams between modules), ``size`` points wide,
    with its lower left corner at (x, y). The card's white padding is its quiet zone."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(data)
    code.make(fit=True)
    matrix = code.get_matrix()
    module = size / len(matrix)
    path = c.beginPath()
    for row_index, row in enumerate(matrix):
        top = y + size - (row_index + 1) * module
        col = 0
        while col < len(row):
            if not row[col]:
                col += 1
                continue
            start = col
            while col < len(row) and row[col]:
                col += 1
            path.rect(x + start * module, top, (col - start) * module, module)
    c.saveState()
    c.setFillColor(colors.black)
    c.drawPath(path, stroke=0, fill=1)
    c.restoreState()


class _CardWriter:
    """Draws one card top-down inside its box; ``y`` is the top of the next line."""

    def __init__(self, c: Canvas, left: float, top: float, width: float) -> None:
        self.c = c
        self.left = left
        self.y = top
        self.width = width

    def lines(self, fit: _Fit, font: str, *, x: float | None = None,
              color: colors.Color = colors.black, leading: float = 1.18) -> None:
        self.c.setFillColor(color)
        self.c.setFont(font, fit.size)
        for line in fit.lines:
            self.y -= fit.size * 0.93  # baseline sits about one ascent below the top
            self.c.drawString(self.left if x is None else x, self.y, line)
            self.y -= fit.size * (leading - 0.93)

    def label(self, text: str) -> None:
        fit = _Fit(LABEL_SIZE, [text])
        self.lines(fit, _fonts().sans, color=GREY_TEXT, leading=1.25)

    def row(self, label: str, value: str, font: str, size: float, *,
            smallest_inline: float = 6.0) -> None:
        """A small grey label, then its value on the rest of the line; a value that would
        have to shrink below ``smallest_inline`` there gets the full width under its label
        instead. Values are never wrapped at spaces: hosts and commands stay whole."""
        inline = _fit(value, font, self.width - LABEL_WIDTH, [(1, size, smallest_inline)],
                      words=False)
        if inline.size >= smallest_inline and len(inline.lines) == 1 and \
                not inline.lines[0].endswith("…"):
            top = self.y
            self.c.setFillColor(GREY_TEXT)
            self.c.setFont(_fonts().sans, LABEL_SIZE)
            self.c.drawString(self.left, top - size * 0.93, label)
            self.y -= (size - inline.size) * 0.5  # keep baselines on the label's line
            self.lines(inline, font, x=self.left + LABEL_WIDTH)
            self.y = min(self.y, top - size * 1.18)
            return
        self.label(label)
        self.lines(_fit(value, font, self.width, [(1, size, 4.5), (2, 4.5, 4)], words=False),
                   font)


def _draw_card(c: Canvas, card: Card, x: float, y: float, w: float, h: float,
               title: str) -> None:
    fonts = _fonts()
    left = x + CARD_PADDING
    inner_w = w - 2 * CARD_PADDING
    top = y + h - CARD_PADDING

    # Top band: who this card is for, with the login QR code on the right.
    qr_x = x + w - CARD_PADDING - QR_SIZE
    _draw_qr(c, card.login_uri, qr_x, top - QR_SIZE, QR_SIZE)
    band = _CardWriter(c, left, top, inner_w - QR_SIZE - 2 * mm)
    title_font = _font_for(title, fonts.bold)
    band.lines(_fit(title, title_font, band.width, [(1, 8, 6), (2, 6, 5)]), title_font,
               color=GREY_TEXT)
    band.y -= 1.5
    name = _one_line(card.name) or card.student_id
    name_font = _font_for(name, fonts.bold)
    band.lines(_fit(name, name_font, band.width, [(1, 13, 10), (2, 10, 6)]), name_font,
               leading=1.12)
    band.y -= 1
    small = [(1, 8, 5)]
    for text in (f"student id  {card.student_id}",
                 f"seat {card.seat} · region {card.region or '—'}",
                 f"user {card.username}"):
        font = _font_for(text, fonts.sans)
        band.lines(_fit(text, font, band.width, small, words=False), font)

    # The password: what is printed is exactly what the student types, never regrouped.
    body = _CardWriter(c, left, min(band.y, top - QR_SIZE) - 2.5, inner_w)
    body.label("password (type it exactly as printed)")
    body.y -= 1
    password_font = fonts.mono_bold
    pw_fit = _fit(card.password, password_font, inner_w - 4 * mm, [(1, 22, 9), (2, 9, 6)],
                  words=False)
    box_h = pw_fit.size * 1.05 * len(pw_fit.lines) + 3 * mm
    box_bottom = body.y - box_h
    c.setFillColor(PASSWORD_BOX)
    c.setStrokeColor(CUT_LINE)
    c.setLineWidth(0.5)
    c.roundRect(left, box_bottom, inner_w, box_h, 1.5 * mm, stroke=1, fill=1)
    c.setFillColor(colors.black)
    c.setFont(password_font, pw_fit.size)
    baseline = body.y - 1.5 * mm
    for line in pw_fit.lines:
        baseline -= pw_fit.size * 0.77  # digits and capitals stand about 0.73 em
        c.drawString(left + 2 * mm, baseline, line)
        baseline -= pw_fit.size * 0.28
    body.y = box_bottom - 3.5

    # How to log in, and what to check on the way.
    body.row("log in", card.ssh_command or "—", fonts.mono_bold, 10, smallest_inline=7.5)
    body.row("host", card.host or "—", fonts.sans, 9)
    body.row("cluster", card.cluster_id or "no cluster", fonts.sans, 9)
    body.y -= 2
    body.lines(_fit(FINGERPRINT_NOTE + ":", fonts.sans, inner_w, [(1, LABEL_SIZE, 5)]),
               fonts.sans, color=GREY_TEXT)
    fingerprint = card.host_key_sha256 or "—"
    body.lines(_fit(fingerprint, fonts.mono, inner_w, [(1, 8.5, 5), (2, 5, 4)], words=False),
               fonts.mono)


def _draw_cut_lines(c: Canvas, x: float, y: float, card_w: float, card_h: float,
                    columns: int, rows: int) -> None:
    c.saveState()
    c.setStrokeColor(CUT_LINE)
    c.setLineWidth(0.6)
    c.setDash(4, 3)
    for i in range(columns + 1):
        c.line(x + i * card_w, y, x + i * card_w, y + rows * card_h)
    for j in range(rows + 1):
        c.line(x, y + j * card_h, x + columns * card_w, y + j * card_h)
    c.setDash()
    # A scissors mark on the left end of each inner cut line says what the lines are for.
    fonts = _fonts()
    if fonts.unicode:
        c.setFillColor(CUT_LINE)
        c.setFont(fonts.sans, 9)
        for j in range(1, rows):
            c.drawRightString(x - 0.5 * mm, y + j * card_h - 3, "✂")
    c.restoreState()


def _footer(c: Canvas, page_w: float, text: str) -> None:
    c.saveState()
    c.setFillColor(GREY_TEXT)
    font = _font_for(text, _fonts().sans)
    c.setFont(font, 7)
    c.drawCentredString(page_w / 2, 7 * mm, text)
    c.restoreState()


def _handout_footer(session: str, page: int, pages: int) -> str:
    return f"session {session} · page {page} of {pages} · keep this sheet private"


def _new_canvas(buffer: io.BytesIO, pagesize: tuple[float, float], title: str) -> Canvas:
    # invariant: same cards, same bytes, so re-rendering handouts changes nothing.
    c = Canvas(buffer, pagesize=pagesize, invariant=1, pageCompression=1,
               initialFontName=_fonts().sans)
    c.setTitle(title)
    c.setAuthor("labkit")
    c.setCreator("labkit")
    return c


def render_handouts_pdf(path: Path, cards: Sequence[Card], *, session: str,
                        page_size: str = "A4", course_title: str = "") -> None:
    """Write the students' cards, 8 to a page (2 x 4), with dashed lines to cut along.

    Cards come in the order given. Every page's footer names the session and says the
    sheet is private. With no cards, the PDF is one page saying "no students".
    """
    page_w, page_h = _page_size(page_size)
    buffer = io.BytesIO()
    title = _session_title(session, course_title)
    c = _new_canvas(buffer, (page_w, page_h), f"{title}: handouts")
    fonts = _fonts()

    if not cards:
        c.setFont(fonts.bold, 16)
        c.drawCentredString(page_w / 2, page_h / 2, "no students")
        _footer(c, page_w, _handout_footer(session, 1, 1))
        c.showPage()
        c.save()
        write_private(path, buffer.getvalue())
        return

    grid_x = MARGIN_SIDE
    grid_y = MARGIN_BOTTOM
    card_w = (page_w - 2 * MARGIN_SIDE) / CARD_COLUMNS
    card_h = (page_h - MARGIN_TOP - MARGIN_BOTTOM) / CARD_ROWS
    pages = math.ceil(len(cards) / CARDS_PER_PAGE)
    for page in range(pages):
        chunk = cards[page * CARDS_PER_PAGE:(page + 1) * CARDS_PER_PAGE]
        _draw_cut_lines(c, grid_x, grid_y, card_w, card_h, CARD_COLUMNS, CARD_ROWS)
        for index, card in enumerate(chunk):
            # Left to right, then top to bottom: the order a person reads the page in.
            col, row = index % CARD_COLUMNS, index // CARD_COLUMNS
            x = grid_x + col * card_w
            y = grid_y + (CARD_ROWS - 1 - row) * card_h
            _draw_card(c, card, x, y, card_w, card_h, title)
        _footer(c, page_w, _handout_footer(session, page + 1, pages))
        c.showPage()
    c.save()
    write_private(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------
# The instructor's sheet

_SHEET_FONT_SIZE = 6.5
_SHEET_PADDING = 2.0
# Columns that never wrap, so the instructor reads them exactly (and pdftotext finds them).
_SHEET_NOWRAP = ("seat", "region", "username", "password")


def _column_widths(natural: list[float], fixed: list[bool], available: float,
                   minimum: float) -> list[float]:
    """Shrink the widest wrappable columns to a common cap until the table fits; share
    any room left over in proportion."""
    total = sum(natural)
    if total <= available:
        spare = available - total
        return [w + spare * w / total for w in natural]
    fixed_total = sum(w for w, f in zip(natural, fixed, strict=True) if f)
    flexible = sorted(w for w, f in zip(natural, fixed, strict=True) if not f)
    room = max(available - fixed_total, minimum * len(flexible))
    cap = room / len(flexible) if flexible else 0.0
    for i, w in enumerate(flexible):  # water-filling: small columns keep their width
        remaining = len(flexible) - i
        if w * remaining <= room:
            room -= w
            continue
        cap = room / remaining
        break
    else:
        cap = max(flexible, default=0.0)
    return [w if f else max(minimum, min(w, cap)) for w, f in zip(natural, fixed, strict=True)]


def render_instructor_sheet_pdf(path: Path, cards: Sequence[Card], *, session: str,
                                page_size: str = "A4") -> None:
    """Write the instructor's copy: the credentials.csv table, landscape, header row
    repeated on every page, students in the order given."""
    page_w, page_h = landscape(_page_size(page_size))
    fonts = _fonts()
    style = ParagraphStyle("cell", fontName=fonts.sans, fontSize=_SHEET_FONT_SIZE,
                           leading=_SHEET_FONT_SIZE * 1.2, splitLongWords=1)
    header_style = ParagraphStyle("head", parent=style, fontName=fonts.bold)

    def cell(field: str, value: str) -> Any:
        if field in _SHEET_NOWRAP:
            return value  # a plain string: one line, never broken
        font = _font_for(value, fonts.sans)
        text = escape(value)
        if font != fonts.sans:
            text = f'<font name="{font}">{text}</font>'
        return Paragraph(text, style)

    def cell_font(field: str, value: str) -> str:
        if field == "password":
            return fonts.mono_bold
        return _font_for(value, fonts.sans)

    natural = []
    for field in CREDENTIAL_FIELDS:
        widest = _width(field, fonts.bold, _SHEET_FONT_SIZE)
        for card in cards:
            value = getattr(card, field)
            widest = max(widest, _width(value, cell_font(field, value), _SHEET_FONT_SIZE))
        natural.append(widest + 2 * _SHEET_PADDING + 1)
    available = page_w - 2 * MARGIN_SIDE
    widths = _column_widths(natural, [f in _SHEET_NOWRAP for f in CREDENTIAL_FIELDS],
                            available, minimum=12 * mm)

    rows: list[list[Any]] = [[Paragraph(escape(f), header_style) for f in CREDENTIAL_FIELDS]]
    for card in cards:
        rows.append([cell(f, getattr(card, f)) for f in CREDENTIAL_FIELDS])
    commands: list[tuple[Any, ...]] = [
        ("FONT", (0, 1), (-1, -1), fonts.sans, _SHEET_FONT_SIZE),
        ("FONT", (CREDENTIAL_FIELDS.index("password"), 1),
         (CREDENTIAL_FIELDS.index("password"), -1), fonts.mono_bold, _SHEET_FONT_SIZE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), _SHEET_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), _SHEET_PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.85, 0.85, 0.85)),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.Color(0.95, 0.95, 0.95)]),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.Color(0.7, 0.7, 0.7)),
    ]
    for i, field in enumerate(CREDENTIAL_FIELDS):
        if field in _SHEET_NOWRAP and field != "password":
            for r, card in enumerate(cards, start=1):
                font = _font_for(getattr(card, field), fonts.sans)
                if font != fonts.sans:
                    commands.append(("FONT", (i, r), (i, r), font, _SHEET_FONT_SIZE))

    heading = ParagraphStyle("heading", parent=style, fontName=fonts.bold, fontSize=11,
                             leading=14, spaceAfter=2 * mm)
    count = f"{len(cards)} student" + ("" if len(cards) == 1 else "s")
    story: list[Any] = [Paragraph(escape(f"{session}: credentials ({count})"), heading),
                        LongTable(rows, colWidths=widths, repeatRows=1,
                                  style=TableStyle(commands))]
    if not cards:
        story += [Spacer(1, 6 * mm), Paragraph("no students", ParagraphStyle(
            "empty", parent=style, fontName=fonts.bold, fontSize=12, leading=14))]

    title = f"session {session} · instructor sheet"
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=(page_w, page_h), leftMargin=MARGIN_SIDE, rightMargin=MARGIN_SIDE,
        topMargin=MARGIN_TOP, bottomMargin=MARGIN_BOTTOM, title=title, author="labkit",
        creator="labkit", invariant=1, initialFontName=fonts.sans,
    )
    doc.build(story, canvasmaker=_numbered_canvas(
        lambda n, total: (f"session {session} · instructor sheet · page {n} of {total}"
                          " · every password is on it: keep it private")))
    write_private(path, buffer.getvalue())


def _numbered_canvas(footer: Callable[[int, int], str]) -> type[Canvas]:
    """A canvas that holds its pages back until the end, so each footer can say
    "page N of M" (platypus only knows M once the whole table has been laid out)."""

    class NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab ships no types
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, page in enumerate(self._pages, start=1):
                self.__dict__.update(page)
                _footer(self, self._pagesize[0], footer(number, total))
                super().showPage()
            super().save()

    return NumberedCanvas
