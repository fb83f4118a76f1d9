"""The documentation pages in a real headless browser (Debian's chromium and chromium-driver,
driven by selenium) against the local stack `make dev` serves: the bundle's page at the root and
a function's page at /<function>/_docs list every operation of the documents, and "Try it out"
with a bearer token answers 200; the token stays for the tab (a reload) and no longer (never in
localStorage, not in a new tab); the page's Content-Security-Policy blocks nothing it needs."""

from __future__ import annotations

import shutil

import pytest
import requests

from tests.conftest import OWNER
from tools import dev
from tools.gateway import function_names

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SESSION_KEY = "gatehouse.authorized"  # where common/web/docs.py's script keeps the token
# Every operation Swagger UI has drawn, as (METHOD, path).
LISTED = """return [...document.querySelectorAll('.opblock')].map(op => [
  op.querySelector('.opblock-summary-method').textContent.trim(),
  op.querySelector('.opblock-summary-path').getAttribute('data-path')]);"""


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM and DRIVER):
        pytest.fail("no chromium or chromedriver: `make browser` installs them (make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations land there
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)  # no sandbox: the tests run as root
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    # Swagger UI renders a long list of operations as it comes into view: a tall window shows
    # them all at once (a reader scrolling sees the same list).
    driver.set_window_size(1280, 20_000)
    yield driver
    driver.quit()


def _operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def _listed(driver, expected: int) -> set[tuple[str, str]]:
    from selenium.webdriver.support.ui import WebDriverWait

    def all_listed(d) -> bool:
        d.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # as a reader scrolls
        return len(d.execute_script(LISTED)) >= expected

    WebDriverWait(driver, 60).until(all_listed)
    return {tuple(pair) for pair in driver.execute_script(LISTED)}


def test_the_bundle_page_lists_every_operation_and_try_it_out_answers(browser, gateway, api):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    for method, path, body in dev.demo(OWNER):
        assert api.call(method, path, user=OWNER, json=body).status_code == 200
    expected = set()
    for function in function_names():
        expected |= _operations(requests.get(f"{gateway}/{function}/_openapi.json", timeout=10).json())
    assert expected == _operations(requests.get(f"{gateway}/_openapi.json", timeout=10).json())

    browser.get(gateway + "/")
    assert _listed(browser, len(expected)) == expected
    wait = WebDriverWait(browser, 30)

    # Authorize with the bearer token, as a user would.
    browser.find_element(By.CSS_SELECTOR, "button.btn.authorize").click()
    field = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".auth-container input")))
    field.send_keys(api.token(OWNER))
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.btn-done").click()
    status, body = _try_get_datasets(browser)
    assert status == "200" and "hemibrain" in body and "manc" in body

    # The token is kept for this tab only: in sessionStorage, never in localStorage.
    assert api.token(OWNER) in browser.execute_script(f"return sessionStorage.getItem('{SESSION_KEY}')")
    assert browser.execute_script("return localStorage.length") == 0
    # A reload keeps it: "Try it out" still answers 200 without authorizing again.
    browser.refresh()
    _listed(browser, len(expected))
    assert browser.find_elements(By.CSS_SELECTOR, "button.btn.authorize.locked")
    assert _try_get_datasets(browser)[0] == "200"
    # A new tab does not have it.
    browser.switch_to.new_window("tab")
    browser.get(gateway + "/")
    _listed(browser, len(expected))
    assert browser.execute_script(f"return sessionStorage.getItem('{SESSION_KEY}')") is None
    assert browser.find_elements(By.CSS_SELECTOR, "button.btn.authorize.unlocked")
    assert _try_get_datasets(browser)[0] == "401"
    browser.close()
    browser.switch_to.window(browser.window_handles[0])

    # The page's Content-Security-Policy refused nothing it loads or runs.
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, refused


def _try_get_datasets(browser) -> tuple[str, str]:
    """GET /datasets on the page: open it, "Try it out", "Execute"; the status and the body."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    operation = next(
        op
        for op in browser.find_elements(By.CSS_SELECTOR, ".opblock.opblock-get")
        if op.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path") == "/datasets"
    )
    if "is-open" not in operation.get_attribute("class"):  # a reload reopens it (deep linking)
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, "button.try-out__btn"))[0].click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, "button.execute"))[0].click()
    status = wait.until(
        lambda _: operation.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
    )[0]
    body = operation.find_element(
        By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description pre"
    )
    return status.text.strip(), body.text


@pytest.mark.parametrize("function", ["datasets", "twins"])
def test_a_function_page_lists_its_operations(browser, gateway, function):
    document = requests.get(f"{gateway}/{function}/_openapi.json", timeout=10).json()
    browser.get(f"{gateway}/{function}/_docs")
    assert _listed(browser, len(_operations(document))) == _operations(document)
    assert browser.title == f"Gatehouse {function}"
