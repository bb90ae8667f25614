"""credentials.csv, handouts.pdf and the instructor sheet, read back the way a person or a
printer would: poppler's pdftotext / pdftoppm / pdffonts and a QR decoder (zxing-cpp)."""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import random
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from labkit import handouts
from labkit.errors import InputError
from labkit.handouts import (
    CARDS_PER_PAGE,
    CREDENTIAL_FIELDS,
    FINGERPRINT_NOTE,
    Card,
    render_handouts_pdf,
    render_instructor_sheet_pdf,
    write_credentials_csv,
)

SESSION = "lxmls-2026"
# The alphabet labkit's passwords use: no 0/O, 1/l/I look-alikes.
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
NAMES = [
    "João Gonçalves",
    "Zoë",
    "Ana Lima",
    "Maximilian Alexander Constantin von Hohenzollern-Sigmaringen de la Torre y Bourbon",
    "Łukasz Żółć",
    "O'Brien, Pat \"Paddy\"",
    "Ngozi Okonkwo-Adebayo",
    "Søren Kierkegaard-Ødegård",
]
LONG_HOST = "ec2-254-254-254-254.ap-southeast-2.compute.amazonaws.com"


def need(tool: str) -> str:
    """The path of a poppler/zxing tool; on CI a missing one is a failure, not a skip."""
    found = shutil.which(tool)
    if found is None:
        message = f"{tool} is not installed (Debian: poppler-utils)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def fingerprint(i: int) -> str:
    digest = hashlib.sha256(f"host key {i}".encode()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def make_cards(count: int, *, seed: int = 7) -> list[Card]:
    rnd = random.Random(seed)
    cards = []
    for i in range(count):
        host = LONG_HOST if i % 6 == 5 else f"54.{i}.{rnd.randrange(256)}.{rnd.randrange(256)}"
        length = 24 if i % 7 == 3 else 14
        password = "".join(rnd.choice(ALPHABET) for _ in range(length))
        cards.append(Card(
            seat=f"s{i:03d}", student_id=f"stu.{i:03d}", name=NAMES[i % len(NAMES)],
            email=f"student{i}@example.org", region=("eu-west-1", "us-east-1")[i % 2],
            host=host, username="ubuntu", password=password,
            instance_id=f"i-{i:017x}", cluster_id="" if i % 4 == 0 else f"j-{i:013d}",
            host_key_sha256=fingerprint(i), ssh_command=f"ssh ubuntu@{host}",
        ))
    return cards


def pdftotext(path: Path, *args: str) -> str:
    return subprocess.run([need("pdftotext"), *args, str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def page_count(path: Path) -> int:
    info = subprocess.run([need("pdfinfo"), str(path)], check=True, capture_output=True,
                          text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]


def page_size(path: Path) -> tuple[float, float]:
    info = subprocess.run([need("pdfinfo"), str(path)], check=True, capture_output=True,
                          text=True).stdout
    m = re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", info, re.M)
    assert m is not None
    return float(m.group(1)), float(m.group(2))


@dataclass
class Word:
    page: int
    text: str
    x_min: float
    y_min: float  # from the top of the page, as pdftotext measures
    x_max: float
    y_max: float


def words(path: Path) -> list[Word]:
    html = pdftotext(path, "-bbox")
    html = re.sub(r"<!DOCTYPE[^>]*>", "", html)
    root = ET.fromstring(html)
    found = []
    for number, page in enumerate(root.iter("{http://www.w3.org/1999/xhtml}page"), start=1):
        for w in page.iter("{http://www.w3.org/1999/xhtml}word"):
            found.append(Word(number, w.text or "", float(w.get("xMin", 0)),
                              float(w.get("yMin", 0)), float(w.get("xMax", 0)),
                              float(w.get("yMax", 0))))
    return found


def lines_of(text: str) -> list[str]:
    return text.splitlines()


# ---------------------------------------------------------------------------------------
# credentials.csv


def test_credentials_csv_has_the_contract_header_and_one_row_per_student(tmp_path: Path) -> None:
    cards = make_cards(5)
    cards[1] = replace(cards[1], name='Pat "Paddy" O\'Brien, Jr.\nsecond line')
    cards[2] = replace(cards[2], name="Zoë Ærøskøbing 李明")
    path = tmp_path / "credentials.csv"

    write_credentials_csv(path, cards)

    raw = path.read_bytes()
    assert raw.split(b"\r\n", 1)[0] == b"seat,student_id,name,email,region,host,username," \
        b"password,instance_id,cluster_id,host_key_sha256"  # no BOM, exact header
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CREDENTIAL_FIELDS
    assert rows[1:] == [[getattr(c, field) for field in CREDENTIAL_FIELDS] for c in cards]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_credentials_csv_is_private_from_creation(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # With umask 0, a file created 0666 and chmod-ed later would need chmod: forbid it.
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("chmod after creation leaves a window where others can read")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    old = os.umask(0)
    try:
        write_credentials_csv(tmp_path / "credentials.csv", make_cards(2))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "credentials.csv").stat().st_mode) == 0o600


def test_credentials_csv_replaces_a_readable_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "credentials.csv"
    path.write_text("old,contents\n")
    path.chmod(0o644)

    write_credentials_csv(path, make_cards(3))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").startswith("seat,student_id,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.csv"]  # no temp left


def test_credentials_csv_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        write_credentials_csv(tmp_path / "nope" / "credentials.csv", make_cards(1))


# ---------------------------------------------------------------------------------------
# handouts.pdf


@pytest.fixture(scope="module")
def thirty() -> list[Card]:
    return make_cards(30)


@pytest.fixture(scope="module", params=["A4", "letter"])
def handout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            thirty: list[Card]) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("handouts") / "handouts.pdf"
    render_handouts_pdf(path, thirty, session=SESSION, page_size=request.param,
                        course_title="LxMLS 2026 — Big Data lab")
    return request.param, path


def test_handouts_have_every_host_and_password_as_text(handout: tuple[str, Path],
                                                       thirty: list[Card]) -> None:
    _, path = handout
    text = pdftotext(path)
    lines = lines_of(text)
    for card in thirty:
        # Each verbatim on one line: real text a student could also copy, not an image.
        assert any(card.password in line for line in lines), card.password
        assert any(card.host in line for line in lines), card.host
        assert any(card.ssh_command in line for line in lines), card.ssh_command
        assert any(card.host_key_sha256 in line for line in lines), card.host_key_sha256
    for name in ("João Gonçalves", "Zoë", "Łukasz Żółć", "Søren Kierkegaard-Ødegård"):
        assert name in text
    assert text.count(FINGERPRINT_NOTE) == len(thirty)
    assert "no cluster" in text and "j-0000000000001" in text
    assert "session lxmls-2026 · page 1 of 4 · keep this sheet private" in text
    assert "session lxmls-2026 · page 4 of 4 · keep this sheet private" in text


def test_handouts_render_every_page(handout: tuple[str, Path], tmp_path: Path) -> None:
    size_name, path = handout
    assert page_count(path) == 4  # 30 cards, 8 to a page
    width, height = page_size(path)
    expected = {"A4": (595.276, 841.89), "letter": (612, 792)}[size_name]
    assert (round(width), round(height)) == tuple(round(v) for v in expected)
    subprocess.run([need("pdftoppm"), "-png", "-r", "50", str(path), str(tmp_path / "page")],
                   check=True, capture_output=True)
    assert len(list(tmp_path.glob("page-*.png"))) == 4


def test_cards_are_in_roster_order_and_no_text_crosses_a_cut_line(
        handout: tuple[str, Path], thirty: list[Card]) -> None:
    size_name, path = handout
    page_w, page_h = handouts.PAGE_SIZES[size_name]
    left, bottom = handouts.MARGIN_SIDE, handouts.MARGIN_BOTTOM
    card_w = (page_w - 2 * handouts.MARGIN_SIDE) / handouts.CARD_COLUMNS
    card_h = (page_h - handouts.MARGIN_TOP - handouts.MARGIN_BOTTOM) / handouts.CARD_ROWS
    grid_top = page_h - handouts.MARGIN_TOP  # in pdftotext's top-down coordinates: MARGIN_TOP

    def cell(word: Word) -> tuple[int, int] | None:
        col = int((word.x_min - left) // card_w)
        row = int((word.y_min - handouts.MARGIN_TOP) // card_h)
        if 0 <= col < handouts.CARD_COLUMNS and 0 <= row < handouts.CARD_ROWS:
            return col, row
        return None

    found = words(path)
    for word in found:
        where = cell(word)
        if where is None:  # the footer and the scissors marks live in the margins
            assert word.y_min > page_h - bottom or word.x_max < left, word
            continue
        col, row = where
        cell_right = left + (col + 1) * card_w
        cell_bottom = handouts.MARGIN_TOP + (row + 1) * card_h
        assert word.x_max <= cell_right + 0.5, f"{word.text!r} runs over a vertical cut line"
        assert word.y_max <= cell_bottom + 0.5, f"{word.text!r} runs over a cut line below it"
    assert grid_top > 0

    for index, card in enumerate(thirty):
        hits = [w for w in found if w.text == card.password]
        assert len(hits) >= 1, card.password
        word = hits[0]
        assert word.page == index // CARDS_PER_PAGE + 1
        slot = index % CARDS_PER_PAGE
        assert cell(word) == (slot % handouts.CARD_COLUMNS, slot // handouts.CARD_COLUMNS)


def test_password_is_monospace(tmp_path: Path) -> None:
    narrow, wide = make_cards(2)
    narrow = replace(narrow, password="iiiiiiiiiiii")
    wide = replace(wide, password="WWWWWWWWWWWW")
    path = tmp_path / "handouts.pdf"
    render_handouts_pdf(path, [narrow, wide], session=SESSION)

    boxes = {w.text: w for w in words(path) if w.text in ("iiiiiiiiiiii", "WWWWWWWWWWWW")}
    width_i = boxes["iiiiiiiiiiii"].x_max - boxes["iiiiiiiiiiii"].x_min
    width_w = boxes["WWWWWWWWWWWW"].x_max - boxes["WWWWWWWWWWWW"].x_min
    assert width_i == pytest.approx(width_w, rel=0.01)
    assert width_i > 150  # large: 12 characters at 20 pt or more
    fonts = subprocess.run([need("pdffonts"), str(path)], check=True, capture_output=True,
                           text=True).stdout
    assert re.search(r"Mono-Bold|Courier-Bold", fonts)


def test_password_is_printed_exactly_as_given(tmp_path: Path) -> None:
    cards = [replace(make_cards(1)[0], password="7kq2-mx9p-Ht4w-Zr8c"),
             replace(make_cards(1)[0], password="7kq2mx9pHt4wZr8cQa3nVb6yWd2eKf9g")]
    path = tmp_path / "handouts.pdf"
    render_handouts_pdf(path, cards, session=SESSION)
    lines = lines_of(pdftotext(path))
    assert "7kq2-mx9p-Ht4w-Zr8c" in lines
    assert "7kq2mx9pHt4wZr8cQa3nVb6yWd2eKf9g" in lines


def test_qr_codes_scan_to_the_login(tmp_path: Path) -> None:
    zxingcpp = pytest.importorskip("zxingcpp") if not os.environ.get("CI") else \
        __import__("zxingcpp")
    from PIL import Image

    cards = make_cards(8)
    path = tmp_path / "handouts.pdf"
    render_handouts_pdf(path, cards, session=SESSION, page_size="letter")
    subprocess.run([need("pdftoppm"), "-png", "-r", "150", str(path), str(tmp_path / "page")],
                   check=True, capture_output=True)
    image = Image.open(next(tmp_path.glob("page-*.png")))
    scanned = {result.text for result in zxingcpp.read_barcodes(image)}
    assert scanned == {f"ssh://ubuntu@{card.host}" for card in cards}


def test_rendering_twice_gives_the_same_file(tmp_path: Path) -> None:
    cards = make_cards(9)
    render_handouts_pdf(tmp_path / "a.pdf", cards, session=SESSION)
    render_handouts_pdf(tmp_path / "b.pdf", cards, session=SESSION)
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_pdfs_are_private(tmp_path: Path) -> None:
    render_handouts_pdf(tmp_path / "handouts.pdf", make_cards(2), session=SESSION)
    render_instructor_sheet_pdf(tmp_path / "sheet.pdf", make_cards(2), session=SESSION)
    for name in ("handouts.pdf", "sheet.pdf"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handouts.pdf", "sheet.pdf"]


def test_no_students_gives_one_page_that_says_so(tmp_path: Path) -> None:
    path = tmp_path / "handouts.pdf"
    render_handouts_pdf(path, [], session=SESSION)
    assert page_count(path) == 1
    assert "no students" in pdftotext(path)
    sheet = tmp_path / "sheet.pdf"
    render_instructor_sheet_pdf(sheet, [], session=SESSION)
    assert page_count(sheet) == 1
    assert "no students" in pdftotext(sheet)


def test_unknown_page_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="page size"):
        render_handouts_pdf(tmp_path / "h.pdf", make_cards(1), session=SESSION,
                            page_size="A3")
    assert not list(tmp_path.iterdir())


def test_without_dejavu_the_cards_fall_back_to_helvetica(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helvetica = handouts._Fonts(sans="Helvetica", bold="Helvetica-Bold", mono="Courier",
                                mono_bold="Courier-Bold", unicode=False)
    monkeypatch.setattr(handouts, "_fonts", lambda: helvetica)
    cards = make_cards(3)
    path = tmp_path / "handouts.pdf"
    render_handouts_pdf(path, cards, session=SESSION, page_size="letter")
    text = pdftotext(path)
    assert "João Gonçalves" in text and "Zoë" in text
    for card in cards:
        assert card.password in lines_of(text)


# ---------------------------------------------------------------------------------------
# The instructor sheet


def test_instructor_sheet_lists_every_student_on_landscape_pages(tmp_path: Path,
                                                                 thirty: list[Card]) -> None:
    cards = thirty + make_cards(30, seed=8)  # enough rows for more than one page
    path = tmp_path / "sheet.pdf"
    render_instructor_sheet_pdf(path, cards, session=SESSION, page_size="letter")

    width, height = page_size(path)
    assert width > height
    pages = page_count(path)
    assert pages >= 2
    lines = lines_of(pdftotext(path, "-layout"))
    for card in cards:
        assert any(card.password in line for line in lines), card.password
        assert any(card.seat in line and card.password in line for line in lines)
    for page in range(1, pages + 1):  # the header row is repeated on every page
        page_text = pdftotext(path, "-layout", "-f", str(page), "-l", str(page))
        assert re.search(r"seat\s+student_id\s+name\s+email", page_text)
        assert f"page {page} of {pages}" in page_text
