"""The Dagster UI, end to end, in a real browser (Chromium driven by Playwright).

Why: the README's UI tour tells users to read the catalog (fully materialized after a demo), the
lineage and each column's OLTP sources, to materialize one (tenant, date) partition by clicking
through the UI, and to see a late asset fail its freshness policy. The GraphQL test
(test_dev_command.py) proves the API; only a browser proves that the pages render on our
definitions, that the launch dialog's partition selection turns into a run of exactly the chosen
partition, and that this run's rows land in PostgreSQL stamped with its id, touching nothing else.
It saves a screenshot of each stage, in ANALYTICS_UI_SCREENSHOTS if set; the README's UI tour
shows seven of them, taken with:

    ANALYTICS_UI_SCREENSHOTS=docs/images \
        .venv/bin/pytest analytics_pipeline_tests/test_ui_browser.py

The browser is the system's Chromium (scripts/install-browser); nothing is downloaded here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from playwright.sync_api import Locator, Page, expect, sync_playwright

from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline_tests.dev_server import DEV_DAYS, LATE_ASSET, DevServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
VIEWPORT = {"width": 1400, "height": 900}
# Dagster shows a "Join the Dagster community" dialog on a first visit from localhost; it would
# pop up over whatever the test is clicking. This is what its "Skip" button stores.
SKIP_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"

# The partition the browser materializes: one the GraphQL test never touches (see dev_server.py).
TENANT = "tenant-002"
DAY = DEV_DAYS[0].isoformat()
# The demo's partitions per asset: two tenants x (its three days and today).
DEMO_PARTITIONS = 2 * (len(DEV_DAYS) + 1)
STALE_ASSET = "/".join(LATE_ASSET[0])
# Generous (the wait ends when the page says Failed): on a loaded machine the daemon's judgment
# has come 1.5 to 5 minutes after the late materialization was recorded.
FRESHNESS_TIMEOUT_MS = 600_000
PARTITION = f"{DAY}|{TENANT}"
ASSET = "analytics/campaign_analytics"
RUN_TIMEOUT_S = 600
STEP_TIMEOUT_MS = 30_000

RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def named(label: str) -> re.Pattern[str]:
    """An accessible name ending in `label`: Dagster's icons prefix theirs ("lineage Lineage")."""
    # Not re.escape: Playwright hands the pattern to the browser as /source/, where an escaped
    # space is a syntax error and a bare '/' ends it.
    literal = re.sub(r"([\\^$.|?*+()\[\]{}/])", r"\\\1", label)
    return re.compile(rf"(^|\s){literal}$")


class Tour:
    """The page, where its screenshots go, and the dev server it talks to."""

    def __init__(self, page: Page, shots: Path, server: DevServer) -> None:
        self.page = page
        self.shots = shots
        self.server = server

    def shot(self, name: str) -> None:
        self.page.screenshot(path=self.shots / f"{name}.png")

    def graph_node(self, name: str) -> Locator:
        # Graph nodes are SVG foreignObjects; the same names also appear in the sidebar tree.
        return self.page.locator("foreignObject").filter(
            has=self.page.get_by_text(name, exact=True)
        )

    @contextlib.contextmanager
    def explained(self) -> Iterator[None]:
        """On any failure: a screenshot, and the dev server's log tail in the message."""
        try:
            yield
        except Exception as exc:
            failure = self.shots / "failure.png"
            with contextlib.suppress(Exception):
                self.page.screenshot(path=failure)
            raise AssertionError(
                f"{type(exc).__name__}: {exc}\nat {self.page.url}\nscreenshot: {failure}\n"
                f"{self.server.log_tail()}"
            ) from exc


def _screenshot_dir(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("ANALYTICS_UI_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def test_materialize_one_partition_in_the_browser(dev_server: DevServer, tmp_path: Path):
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run scripts/install-browser (Debian's chromium package), as the "
        "README's test command does"
    )
    shots = _screenshot_dir(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT, base_url=dev_server.url)
            context.add_init_script(SKIP_COMMUNITY_DIALOG)
            context.set_default_timeout(STEP_TIMEOUT_MS)
            expect.set_options(timeout=STEP_TIMEOUT_MS)
            tour = Tour(context.new_page(), shots, dev_server)
            with tour.explained():
                # Again, if a run made it fresh since the fixture did: judged during the tour.
                dev_server.keep_late(*LATE_ASSET)
                _read_the_catalog(tour)
                _read_the_lineage(tour)
                _read_the_column_lineage(tour)
                _open_the_partitions(tour)
                run_id = _launch_one_partition(tour)
                _wait_for_success(tour, run_id)
                rows_shown = _see_the_materialization(tour, run_id)
                _check_what_the_run_wrote(dev_server, run_id, rows_shown)
                _see_a_late_asset_fail_its_freshness(tour)
        finally:
            browser.close()


def _read_the_catalog(tour: Tour) -> None:
    """After the demo, every OLAP asset reads fully materialized: the date dimension starts on
    the demo's first day, and the demo materialized every partition up to today."""
    page = tour.page
    page.goto("/assets")
    for rollup in REGISTRY:
        # The catalog is a virtualized grid of divs, not a table.
        row = page.locator("div[class*='VirtualizedTable_row__']").filter(
            has=page.get_by_role("link", name=named(f"analytics / {rollup.name}"))
        )
        expect(row).to_contain_text(f"{DEMO_PARTITIONS} partitions")
        # Materialized, missing, failed, in progress, total. A run the daemon started since the
        # demo (the schedules' today) may still be in progress: wait for it to end.
        deadline = time.monotonic() + RUN_TIMEOUT_S
        status = _catalog_status(row)
        while status[0] != "All" and time.monotonic() < deadline:
            time.sleep(2)
            status = _catalog_status(row)
        assert status == ["All", "0", "0", "0", f"{DEMO_PARTITIONS} partitions"], (
            rollup.name,
            status,
        )
    tour.shot("catalog")


def _catalog_status(row: Locator) -> list[str]:
    return row.inner_text().splitlines()[-5:]


def _read_the_column_lineage(tour: Tour) -> None:
    """Each column of an OLAP table names the OLTP columns it is computed from."""
    page = tour.page
    page.goto(f"/assets/{ASSET}")
    delivered = page.get_by_role("row").filter(
        has=page.get_by_role("cell", name="delivered", exact=True)
    )
    expect(delivered).to_contain_text("From OLTP: emails.sent_at, status.")
    expect(page.get_by_text("Freshness policy", exact=True).first).to_be_visible()
    page.get_by_text("Columns", exact=True).first.scroll_into_view_if_needed()
    tour.shot("columns")


def _see_a_late_asset_fail_its_freshness(tour: Tour) -> None:
    """An asset whose latest refresh is two hours old shows its freshness policy failed (made
    late by the `dev_server` fixture, and again here if a run has refreshed it since)."""
    tour.server.keep_late(*LATE_ASSET)
    page = tour.page
    page.goto(f"/assets/{STALE_ASSET}")
    status = page.get_by_text("Freshness policy", exact=True).first.locator("..")
    deadline = time.monotonic() + FRESHNESS_TIMEOUT_MS / 1000
    # The daemon judges freshness every 30 s; the page shows what it last recorded. A scheduled
    # refresh (or the GraphQL test's runs) would have made it fresh again: keep_late makes it late.
    while time.monotonic() < deadline and "Failed" not in status.inner_text():
        time.sleep(5)
        tour.server.keep_late(*LATE_ASSET)
        page.reload()
    expect(status).to_contain_text("Failed")
    tour.shot("stale")


def _read_the_lineage(tour: Tour) -> None:
    page = tour.page
    page.goto("/")
    page.get_by_role("navigation").get_by_role("link", name=named("Lineage")).click()
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    # Collapsed, the global graph is one node per group: the OLTP sources feed five groups.
    for group in ("oltp_sources", "campaigns", "deliverability", "leads", "billing", "compliance"):
        expect(tour.graph_node(group)).to_have_count(1)
    tour.shot("lineage-groups")

    # Narrow it to the campaigns group and what feeds it, then open both groups.
    page.locator(".CodeMirror").first.click()  # the asset selection box
    page.keyboard.type('+group:"campaigns"')
    page.keyboard.press("Enter")
    expect(tour.graph_node("billing")).to_have_count(0)
    tour.graph_node("campaigns").click()
    expect(tour.graph_node("campaign_analytics")).to_have_count(1)
    tour.graph_node("oltp_sources").click()
    expect(tour.graph_node("emails")).to_have_count(1)
    # The graph only fits itself to the view when it loads.
    page.reload()
    for asset in ("emails", "sequence_steps", "campaign_analytics", "sequence_step_analytics"):
        expect(tour.graph_node(asset)).to_have_count(1)
    expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
    tour.shot("lineage")


def _open_the_partitions(tour: Tour) -> None:
    page = tour.page
    page.get_by_role("navigation").get_by_role("link", name=named("Catalog")).click()
    page.get_by_role("link", name=named("analytics / campaign_analytics")).click()
    expect(page).to_have_url(re.compile(f"/assets/{ASSET}"))
    page.get_by_role("tab", name="Partitions").click()
    expect(page.get_by_placeholder("Filter by tenant")).to_be_visible()
    for tenant in ("tenant-001", "tenant-002"):
        expect(page.get_by_text(tenant, exact=True).first).to_be_visible()
    tour.shot("partitions")


def _launch_one_partition(tour: Tour) -> str:
    """Materialize… → one date, one tenant → Launch; the run id, from the run page it opens."""
    page = tour.page
    page.get_by_role("button", name=named("Materialize…")).click()
    dialog = page.get_by_role("dialog")
    expect(
        dialog.get_by_text("Launch runs to materialize analytics / campaign_analytics")
    ).to_be_visible()
    dialog.get_by_placeholder(re.compile(r"^ex: ")).fill(DAY)
    page.keyboard.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name=named(TENANT)).click()
    dialog.get_by_text("Launch runs to materialize").click()  # closes the tenant menu
    expect(page.get_by_role("menuitem")).to_have_count(0)
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name=named("Launch 1 run"))
    expect(launch).to_be_enabled()
    tour.shot("launch-dialog")
    launch.click()
    toast = page.get_by_role("listitem").filter(has_text=re.compile(r"Launched run [0-9a-f]{8}"))
    toast.get_by_role("link", name=named("View")).click()
    page.mouse.move(0, 0)  # a toast under the pointer never goes away
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    return re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)


def _wait_for_success(tour: Tour, run_id: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        status = tour.server.graphql(RUN_STATUS, {"id": run_id})["data"]["runOrError"]["status"]
        if status in DONE:
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} is {status} after at most {RUN_TIMEOUT_S}s"
    page = tour.page
    expect(page.get_by_text("Success", exact=True)).to_be_visible()
    expect(page.get_by_text(f"partition: {PARTITION}")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Launched run "))).to_have_count(0)
    tour.shot("run")


def _see_the_materialization(tour: Tour, run_id: str) -> int:
    """The partition's latest materialization is the run's; returns the row count it shows."""
    page = tour.page
    page.goto(f"/assets/{ASSET}?view=partitions")
    page.get_by_placeholder("Filter by date").fill(DAY)
    page.get_by_title(DAY, exact=True).click()
    page.get_by_title(TENANT, exact=True).click()
    expect(page.get_by_title(PARTITION, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=run_id[:8])).to_be_visible()
    # The partition's own figures (the run's are its "Run summary" observation).
    rows = int(_metadata_value(page, "dagster/row_count").inner_text())
    expect(_metadata_value(page, "rows_written")).to_have_text(str(rows))
    expect(_metadata_value(page, "rows_replaced")).to_have_text(re.compile(r"^\d+$"))
    tour.shot("materialization")
    return rows


def _metadata_value(page: Page, key: str) -> Locator:
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))
    return row.get_by_role("cell").nth(1)


def _check_what_the_run_wrote(server: DevServer, run_id: str, rows_shown: int) -> None:
    """Every row of the partition carries the run's id, no other row of any table does, and
    the UI's row count is the partition's."""
    embedded = server.embedded()
    embedded.start()  # attaches as a guest: the dev command owns the server
    engine = sa.create_engine(embedded.url())
    try:
        with engine.connect() as conn:
            stamped = {}
            for rollup in REGISTRY:
                t = rollup.table
                for tenant, day, rows in conn.execute(
                    sa.select(t.c.tenant_id, t.c.date, sa.func.count())
                    .where(t.c.refreshed_by_run == run_id)
                    .group_by(t.c.tenant_id, t.c.date)
                ):
                    stamped[(rollup.name, tenant, day)] = rows
            t = next(r.table for r in REGISTRY if r.name == "campaign_analytics")
            in_partition = conn.execute(
                sa.select(t.c.refreshed_by_run, sa.func.count())
                .where(t.c.tenant_id == TENANT, t.c.date == dt.date.fromisoformat(DAY))
                .group_by(t.c.refreshed_by_run)
            ).all()
    finally:
        engine.dispose()
    key = ("campaign_analytics", TENANT, dt.date.fromisoformat(DAY))
    assert list(stamped) == [key], f"run {run_id} wrote {stamped}, not only {key}"
    assert in_partition == [(run_id, stamped[key])], in_partition
    assert stamped[key] == rows_shown > 0, f"the UI shows {rows_shown} row(s), the table has"
