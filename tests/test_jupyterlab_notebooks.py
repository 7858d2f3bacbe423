"""A local reader opens a chapter in the project's JupyterLab and gets a notebook.

`make install` writes jupytext's default viewer for markdown into the venv's own Jupyter
config (``.venv/etc/jupyter/labconfig``).  The browser test starts JupyterLab from the venv
on 127.0.0.1 with a token and a fresh, empty home config, opens a chapter in headless
Chromium and looks for a notebook with cells.  Its counterpart turns the setting off in the
user settings (which win over the venv's defaults) and sees the text editor, so the check
tells the two apart.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from book_tools import CHROMEDRIVER, CHROMIUM, ROOT, ensure_chromium
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

VENV = Path(sys.prefix)
LABCONFIG = VENV / "etc" / "jupyter" / "labconfig" / "default_setting_overrides.json"
CHAPTER = "book/01_referencing_data.md"
DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"


def test_makefile_install_sets_the_notebook_viewer():
    makefile = (ROOT / "Makefile").read_text()
    install = next(line for line in makefile.splitlines() if line.startswith("install:"))
    assert "$(LABCONFIG)" in install
    assert "LABCONFIG := $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json" in makefile
    assert "jupytext-config --settings-file $(LABCONFIG) set-default-viewer markdown myst" in makefile
    readme = (ROOT / "README.md").read_text()
    assert "jupyter lab" in readme and "default_setting_overrides.json" in readme


def test_venv_labconfig_makes_markdown_open_as_a_notebook():
    """What `make install` wrote is there (run `make install` after a fresh checkout)."""
    viewers = json.loads(LABCONFIG.read_text())[DOCMANAGER]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyterlab(home: Path, user_settings: dict | None = None) -> Iterator[str]:
    """JupyterLab from the venv on 127.0.0.1, rooted at the repository; yields its URL."""
    env = {
        **os.environ,
        # nothing from the real home folder: only the venv's config counts
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    if user_settings is not None:
        plugin = home / "settings" / "@jupyterlab" / "docmanager-extension"
        plugin.mkdir(parents=True)
        (plugin / "plugin.jupyterlab-settings").write_text(json.dumps(user_settings))
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        str(VENV / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
        f"--port={port}", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}", "--ServerApp.open_browser=False",
        "--ServerApp.allow_root=True",
    ]  # fmt: skip
    with open(home / "jupyterlab.log", "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                    break
                except (urllib.error.URLError, ConnectionError):
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            "JupyterLab did not start:\n" + (home / "jupyterlab.log").read_text()
                        ) from None
                    time.sleep(0.5)
            yield f"{base}/lab/tree/{CHAPTER}?token={token}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture(scope="module")
def browser():
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--window-size=1280,900",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]:  # fmt: skip
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="howto-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(90)
        try:
            yield driver
        finally:
            driver.quit()


def opened_as(driver, url: str) -> str:
    """Open url and say what the chapter's main-area widget became: notebook or editor."""
    driver.get(url)
    wait = WebDriverWait(driver, 90)
    either = (
        "#jp-main-dock-panel .jp-Notebook .jp-Cell, #jp-main-dock-panel .jp-FileEditor"
    )
    try:
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, either)))
    except TimeoutException:
        raise AssertionError(f"JupyterLab opened neither a notebook nor an editor for {CHAPTER}") from None
    cells = driver.find_elements(By.CSS_SELECTOR, "#jp-main-dock-panel .jp-Notebook .jp-Cell")
    editors = driver.find_elements(By.CSS_SELECTOR, "#jp-main-dock-panel .jp-FileEditor")
    if cells and not editors:
        # the chapter itself, split into cells: its title in a markdown cell, and code cells
        # (JupyterLab renders only the cells in view, so the count is of those)
        wait.until(lambda d: "Referencing data" in d.find_element(
            By.CSS_SELECTOR, ".jp-Notebook .jp-MarkdownCell").text)
        code = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")
        assert code, "a notebook with no code cell"
        return "notebook"
    if editors and not cells:
        return "editor"
    raise AssertionError(f"both a notebook and an editor: {len(cells)} cells, {len(editors)}")


def test_chapter_opens_as_a_notebook(browser, tmp_path):
    with jupyterlab(tmp_path) as url:
        assert opened_as(browser, url) == "notebook"


def test_without_the_setting_the_chapter_opens_as_text(browser, tmp_path):
    """The user setting wins over the venv's default: markdown goes back to the editor."""
    with jupyterlab(tmp_path, user_settings={"defaultViewers": {}}) as url:
        assert opened_as(browser, url) == "editor"
