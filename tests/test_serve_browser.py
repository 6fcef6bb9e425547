"""The web pages in a real browser (Debian's chromium, driven by Playwright): what a person sees and clicks.

Screenshots go to $TANSAKU_SCREENSHOTS (default: the test's temporary directory), to be looked at.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from tansaku.active.campaign import run_campaign
from tansaku.active.campaign_config import config_from_dict
from tansaku.active.oracles import DatasetOracle
from tansaku.store import open_database
from tests.serving import copy_database, has_chromium, serving
from tests.test_serve import get_json, materials_with

# one pytest-xdist worker runs these (make test): served_world, a DFT run among it, is built once
pytestmark = pytest.mark.xdist_group("served")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not has_chromium():
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI: 'make test' installs it")
        pytest.skip("chromium not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("TANSAKU_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def site(served_world, tmp_path):
    """A private copy of the served database (the campaign test adds a round to it) behind a live server."""
    path, models = served_world
    copy = copy_database(f"sqlite:///{path}", tmp_path / "browsed.db")
    with serving(copy, models) as url:
        yield url, copy, models


def loaded(page, selector: str) -> bool:
    """An image that the browser actually decoded (a broken link has zero natural width)."""
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_filter_sort_page_and_download_in_the_browser(browser, site, shots):
    url, path, _ = site
    page = browser.new_page(viewport={"width": 1300, "height": 900}, accept_downloads=True)
    page.goto(f"{url}/")
    assert page.url.endswith("/materials")
    total = len(materials_with(path, "SELECT id FROM materials"))
    assert page.inner_text("#count").replace(",", "").startswith(f"{total} materials")
    assert page.locator("#materials tbody tr").count() == 50

    page.fill("input[name=elements]", "Ti,O")
    page.select_option("#range_property", "band_gap")
    page.fill("#range_min", "2")
    page.fill("#range_max", "3.5")
    page.click("#apply")
    page.wait_for_load_state()
    expected = get_json(f"{url}/api/materials?elements=Ti,O&min_band_gap=2&max_band_gap=3.5&limit=1")["total"]
    assert expected > 50 and page.inner_text("#count").startswith(f"{expected} materials")
    page.click("#materials thead >> text=band_gap")  # sort by the band gap, largest first
    page.wait_for_load_state()
    header = page.locator("#materials thead th").all_inner_texts()
    column = header.index("band_gap ▼")
    gaps = [float(t) for t in page.locator(f"#materials tbody td:nth-child({column + 1})").all_inner_texts()]
    assert gaps == sorted(gaps, reverse=True) and all(2 <= g <= 3.5 for g in gaps)
    page.screenshot(path=str(shots / "materials.png"))
    page.click("#next")
    page.wait_for_load_state()
    assert "offset=50" in page.url and page.locator("#prev").count() == 1
    more = [float(t) for t in page.locator(f"#materials tbody td:nth-child({column + 1})").all_inner_texts()]
    assert max(more) <= min(gaps)

    with page.expect_download() as download:
        page.click("#csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows) == expected and all("Ti" in r["reduced_formula"] for r in rows)

    page.click("#materials tbody tr:first-child td:nth-child(2) a")
    page.wait_for_load_state()
    assert page.locator("#properties tbody tr").count() >= 4 and loaded(page, "#structure")
    page.screenshot(path=str(shots / "material.png"), full_page=True)
    page.close()


def test_computed_material_model_and_jobs_pages(browser, site, shots):
    url, path, _ = site
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    (mgo,) = materials_with(path, "SELECT id FROM materials WHERE source_id = 'mp-1265'")
    page.goto(f"{url}/materials/{mgo}")
    assert "computed (dft:qe:test)" in page.inner_text("#properties")
    phonon = next(c for c in get_json(f"{url}/api/materials/{mgo}")["calculations"] if c["step"] == "phonon")
    page.click(f"#calc-{phonon['id']} summary")  # a calculation's details open on a click
    page.click(f"#calc-{phonon['id']} >> text=output.out")
    page.wait_for_load_state()
    assert "PHONON" in page.inner_text("body")
    page.go_back()

    page.goto(f"{url}/models")
    page.click("#models tbody tr:first-child a")
    page.wait_for_load_state()
    assert loaded(page, "#parity") and loaded(page, "#importance")
    page.screenshot(path=str(shots / "model.png"), full_page=True)

    page.goto(f"{url}/jobs")
    assert page.locator("#none").count() == 1
    page.goto(f"{url}/materials/999999")
    assert "no material with id 999999" in page.inner_text("#error")
    page.close()


def test_campaign_page_follows_a_new_round(browser, site, shots):
    url, path, _ = site
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{url}/campaigns")
    page.click("text=green")
    page.wait_for_load_state()
    assert "found in 10 runs" in page.inner_text("#hits") and loaded(page, "#progress")
    before = page.get_attribute("#progress", "src")
    page.screenshot(path=str(shots / "campaign.png"), full_page=True)

    db = open_database(path)  # the campaign goes on while the page is open (a more generous budget)
    status = get_json(f"{url}/api/campaigns/green")
    config = config_from_dict({
        "name": "green", "property": "band_gap", "goal": status["goal"],
        "acquisition": {"strategy": "range", "batch": 5}, "budget": {"runs": 15},
        "candidates": {"query": "subset=paper"}, "training": {"init_random": 5},
        "model": {"learner": "et", "trees": 30, "cv_folds": 3},
        "oracle": {"kind": "dataset", "method": "import:oxi_diel_db"}})
    run_campaign(db, config, DatasetOracle(db, "band_gap", "import:oxi_diel_db"), say=lambda _: None)
    db.dispose()
    page.reload()
    assert "found in 15 runs" in page.inner_text("#hits") and loaded(page, "#progress")
    assert page.get_attribute("#progress", "src") != before and page.locator("table.picks").count() >= 3
    page.close()
