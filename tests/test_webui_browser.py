"""The live page in a real browser: headless Chromium from Debian's packages, driven by Playwright, against the gateway
and a real tritonserver. Types a sentence with characters outside the BMP before entities, checks the highlighted spans
and their colours and that the entity table equals the server's answer, switches to FP32, pastes a long text, and
watches the page through a gateway outage. Saves screenshots in build/screenshots/.

Installs what is missing (Debian's chromium with apt, the Playwright package with pip). With CI=true a browser that
cannot be had fails the test; elsewhere the test is skipped with the reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_webui_gateway import REPO_ROOT, running_gateway, wait_healthy
from texts import expected_entities
from triton_calls import infer

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
IN_CI = os.environ.get("CI", "").lower() == "true"
DEBIAN_PACKAGES = [line.strip() for line in (REPO_ROOT / "requirements" / "debian-test.txt").read_text().splitlines()
                   if line.strip() and not line.startswith("#")]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
COLORS = {"PER": "rgb(255, 94, 94)", "LOC": "rgb(0, 255, 255)", "ORG": "rgb(255, 255, 0)"}

# An emoji (outside the BMP: two UTF-16 units, one code point) before the first entity, more of them and a CJK
# Extension B character further on: every highlight after them is off unless offsets are converted.
SENTENCE = "😀张三在北京的清华大学读书，🎉李四去了上海。𠀀王小明在微软公司（Microsoft）工作！"
# The page's "long ×600" sample (webui/static/app.js): its first three samples, 600 times, one per line.
PAGE_SAMPLES = ["张三在北京的清华大学读书。", "😀欧阳娜娜从上海飞到乌鲁木齐，参加联合国的会议。",
                "李四在微软公司（Microsoft）工作，周末去长江边钓鱼，王小明也来了。"]
LONG_SAMPLE = "\n".join(["".join(PAGE_SAMPLES)] * 600)


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def apt_install(packages: list[str]) -> str:
    """Installs Debian packages as root, or with non-interactive sudo; returns what went wrong, if anything."""
    if not shutil.which("apt-get"):
        return "apt-get is not available"
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        return "not root and no sudo"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        done = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode:
            return f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}"
    return ""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    missing = [p for p in DEBIAN_PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0] if shutil.which("dpkg") else []
    if path is None or missing:
        problem = apt_install(missing or ["chromium"])
        path = find_chromium()
        if path is None:
            unavailable(f"no Chromium browser (Debian package chromium): {problem or 'not found after install'}")
    return path


@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                               str(REPO_ROOT / "requirements" / "webui-test.txt")], capture_output=True, text=True)
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            unavailable(f"the playwright package is missing and could not be installed: {done.stderr[-500:]}")
    with sync_playwright() as api:
        yield api


@pytest.fixture
def browser_page(chromium, playwright_api, tmp_path):
    """A page in a new headless Chromium with a new, empty profile."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    context = playwright_api.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1360, "height": 860}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(120_000)
    # The page's Content-Security-Policy forbids eval: what the test evaluates in it is written as functions.
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    try:
        yield page
    finally:
        context.close()


def table_rows(page) -> list[tuple]:
    return [tuple(row) for row in page.eval_on_selector_all("#entities tbody tr", """rows => rows.map(r => [
        r.dataset.type, Number(r.dataset.start), Number(r.dataset.end), r.querySelector('.span').textContent,
        Number(r.querySelector('.score').textContent)])""")]


def assert_table_is(page, entities: list[dict]) -> None:
    rows = table_rows(page)
    assert [row[:4] for row in rows] == [(e["type"], e["start"], e["end"], e["span"]) for e in entities]
    # Scores as the table shows them (4 decimals): an answer does not depend on its batch (test_batch_independence).
    assert [row[4] for row in rows] == pytest.approx([e["score"] for e in entities], abs=1e-4)


def page_state(page) -> str:
    return page.evaluate("""() => JSON.stringify({
        gateway: document.body.dataset.gateway, triton: document.body.dataset.triton,
        chars: document.getElementById('text').value.length, tail: document.getElementById('text').value.slice(-20),
        total: document.getElementById('entity-total').textContent, latency: document.getElementById('latency').textContent,
        error: document.getElementById('error').textContent, banner: document.getElementById('banner').textContent,
        busy: !document.getElementById('busy').hidden})""")


def wait_until(page, predicate: str, arg=None, timeout: float = 120_000) -> None:
    try:
        page.wait_for_function(predicate, arg=arg, timeout=timeout)
    except Exception as err:
        raise AssertionError(f"{predicate} never held; the page: {page_state(page)}") from err


def wait_for_table(page, entities: list[dict], model: str) -> None:
    """Waits until the answer for the current text from `model` is drawn (rows equal to `entities`)."""
    want = [[e["type"], e["start"], e["end"]] for e in entities]
    wait_until(page, """([want, model]) => {
        const rows = [...document.querySelectorAll('#entities tbody tr')]
            .map(r => [r.dataset.type, Number(r.dataset.start), Number(r.dataset.end)]);
        const latency = document.getElementById('latency').textContent;
        return JSON.stringify(rows) === JSON.stringify(want) && latency.endsWith(' ' + model)
            && document.getElementById('busy').hidden;
    }""", [want, model])


def highlights(page) -> list[dict]:
    """Each highlight: its type, its text, the text before it in the highlight layer, and its colours."""
    return page.eval_on_selector_all("#highlights mark", """marks => marks.map(m => {
        const before = document.createRange();
        before.setStart(document.getElementById('highlights'), 0);
        before.setEndBefore(m);
        const style = getComputedStyle(m);
        return {type: m.dataset.type, text: m.textContent, before: before.toString(),
                underline: style.textDecorationColor, background: style.backgroundColor};
    })""")


def test_page_highlights_as_you_type(served, browser_page, tmp_path):
    page = browser_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (answer_int8,) = infer(served, "http", [SENTENCE], "ner")
    (answer_fp32,) = infer(served, "http", [SENTENCE], "ner_fp32")
    assert [(e["type"], e["start"], e["end"]) for e in answer_int8] == expected_entities(SENTENCE)

    with running_gateway(served.grpc_url, tmp_path / "gateway.log") as gateway:
        wait_healthy(gateway)
        page.goto(gateway.url + "/")
        page.wait_for_selector("body[data-gateway=connected][data-triton=ready]")
        legend = page.eval_on_selector_all("#legend li", "items => items.map(li => li.dataset.type)")
        (ner_info,) = [m for m in page.evaluate("[...state.models.values()]") if m["name"] == "ner"]
        assert legend == ner_info["entity_types"] and set(legend) >= {"PER", "LOC", "ORG"}

        # Type it, key by key.
        page.click("#text")
        page.keyboard.type(SENTENCE, delay=25)
        assert page.input_value("#text") == SENTENCE
        wait_for_table(page, answer_int8, "ner")

        # The entity table is the server's answer (code-point offsets, as served).
        assert_table_is(page, answer_int8)
        # Each highlight covers exactly its span, after everything before it (UTF-16 positions right after the
        # emoji), in its type's colour.
        marks = highlights(page)
        assert [(m["type"], m["text"]) for m in marks] == [(e["type"], e["span"]) for e in answer_int8]
        for mark, entity in zip(marks, answer_int8):
            assert mark["before"] == SENTENCE[: entity["start"]], entity
            assert mark["underline"] == COLORS[entity["type"]], mark
            assert mark["background"] == COLORS[entity["type"]].replace("rgb", "rgba").replace(")", ", 0.22)")
        # The highlight layer lays the text out exactly as the text area does.
        layout = page.evaluate("""() => {
            const t = document.getElementById('text'), h = document.getElementById('highlights');
            return [t.scrollHeight, h.scrollHeight, t.clientWidth, h.clientWidth];
        }""")
        assert layout[0] == layout[1] and layout[2] == layout[3], layout
        # Counts per type.
        counts = dict(page.eval_on_selector_all(
            "#legend li", "items => items.map(li => [li.dataset.type, Number(li.querySelector('.count').textContent)])"))
        for entity_type in legend:
            assert counts[entity_type] == sum(e["type"] == entity_type for e in answer_int8)
        latency = page.text_content("#latency")
        assert re.fullmatch(r"round trip \d+ ms · Triton \d+ ms · ner", latency), latency
        print(f"\nthe page shows, for {len(SENTENCE)} characters (tiny test model): {latency}")
        assert page.is_hidden("#banner") and page.is_hidden("#error")
        page.screenshot(path=str(SCREENSHOTS / "webui.png"), full_page=True)

        # Copy as JSON: the clipboard holds the answer.
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
        page.click("#copy-json")
        wait_until(page, "() => document.getElementById('copy-json').textContent.startsWith('Copied')")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert '"model": "ner"' in copied and '"span": "清华大学"' in copied

        # The FP32 ensemble, through the switch.
        page.click("label[for=model-fp32]")
        wait_for_table(page, answer_fp32, "ner_fp32")
        assert_table_is(page, answer_fp32)

        # A long paste (tens of thousands of characters) is answered; the table shows the first 1000 rows and the
        # page keeps working.
        (answer_long,) = infer(served, "http", [LONG_SAMPLE], "ner_fp32")
        page.click("button.sample:text('long ×600')")
        wait_until(page, "n => Number(document.getElementById('entity-total').textContent) === n", len(answer_long))
        assert len(table_rows(page)) == 1000 and page.is_visible("#table-note")
        assert page.eval_on_selector_all("#highlights mark", "m => m.length") == len(answer_long)
        page.click("#text")
        page.keyboard.press("Control+End")
        page.keyboard.type("。欧阳娜娜")
        (answer_longer,) = infer(served, "http", [LONG_SAMPLE + "。欧阳娜娜"], "ner_fp32")
        assert answer_longer[-1]["span"] == "欧阳娜娜"
        wait_until(page, "n => Number(document.getElementById('entity-total').textContent) === n", len(answer_longer))
        assert page.input_value("#text") == LONG_SAMPLE + "。欧阳娜娜"

        # Back to the sentence, INT8.
        page.fill("#text", SENTENCE)
        page.click("label[for=model-int8]")
        wait_for_table(page, answer_int8, "ner")

        # The gateway goes away: the page says so and retries; when it is back the page recovers by itself.
        port = gateway.port
    page.wait_for_selector("body[data-gateway=down]")
    assert "Gateway down" in page.text_content("#banner") and page.is_visible("#banner")
    page.screenshot(path=str(SCREENSHOTS / "webui-gateway-down.png"))
    with running_gateway(served.grpc_url, tmp_path / "gateway-again.log", port=port):
        page.wait_for_selector("body[data-gateway=connected][data-triton=ready]", timeout=120_000)
        page.fill("#text", SENTENCE + "张三")
        wait_for_table(page, answer_int8 + [{"type": "PER", "start": len(SENTENCE), "end": len(SENTENCE) + 2}], "ner")
        assert page.is_hidden("#banner")

        # An answer to an older request than the latest is dropped by its id.
        before = table_rows(page)
        page.evaluate("""() => onMessage(JSON.stringify({id: state.latestId - 1, model: "ner", latency_ms: 1,
            entities: [{type: "ORG", start: 0, end: 1, span: "😀", score: 1}]}))""")
        assert table_rows(page) == before
        # Types other than PER, LOC and ORG, when a model serves them, get distinct colours in the legend.
        legend = page.evaluate("""() => {
            applyStatus({type: "status", triton_ready: true, default_model: "ner", limits: state.limits,
                         models: [...state.models.values()].map(m => ({...m, entity_types: [...m.entity_types, "GPE", "PRODUCT"]}))});
            return [...document.querySelectorAll('#legend li')].map(li =>
                [li.dataset.type, getComputedStyle(li.querySelector('.swatch')).backgroundColor]);
        }""")
        colors = dict(legend)
        assert set(colors) == {"PER", "LOC", "ORG", "GPE", "PRODUCT"} and len(set(colors.values())) == 5
        assert all(colors[t] == COLORS[t] for t in COLORS)
    assert page.errors == []
