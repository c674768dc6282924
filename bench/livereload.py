#!/usr/bin/env python3
"""Live reload in a real browser: save a file -> the open page shows it.

    flock /tmp/bench.lock /work/venv/bin/python bench/livereload.py

Generates, in a temporary directory, a small WSGI app whose page links a
stylesheet served with --static, serves it with runserver.py (reloader on,
live reload on by default, PYTHONDONTWRITEBYTECODE cleared as on a user's
machine) and opens the page in headless Chromium driven by Playwright
(Debian's /usr/bin/chromium: no browser download).  Then, SAVES times each:

- save the app's module by atomic rename -> the page (reloaded by itself)
  shows the new text: from the save to the new page's DOMContentLoaded;
- save the stylesheet -> the new colour is applied, with no navigation: from
  the save to the first animation frame that sees it.

Both ends are read on the same clock (the browser's Date.now() and Python's
time.time(), one machine).  Writes bench/livereload.md and bench/livereload.json.
Needs the playwright package (the Python one) in the interpreter running it.
"""

import argparse
import datetime
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import machine_info, runserver_fingerprint, write_atomically  # noqa: E402

SAVES = 5
SETTLE = 1.0            # seconds before each save, plus a random part up to JITTER, so
JITTER = 0.5            # that saves fall anywhere in a polling cycle
SAVE_TIMEOUT = 10       # seconds a save may take to show before it counts as missed
APP_TARGET = 0.35       # seconds: save the app -> the page shows the new content (median)
CSS_TARGET = 0.15       # seconds: save a stylesheet -> the new style applied (median)
CHROMIUM = "/usr/bin/chromium"

APP = '''\
"""The page of bench/livereload.py (generated)."""
VERSION = "version-{version}"


def app(environ, start_response):
    body = ("<!doctype html><html><head><meta charset=utf-8><title>live reload</title>"
            "<link rel=stylesheet href=/static/site.css></head>"
            "<body><h1 id=version>%s</h1><p>A page served by runserver.py.</p></body></html>"
            % VERSION).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''
CSS = "body {{ font: 18px sans-serif; margin: 2em }}\nh1 {{ color: rgb({red}, 0, 0) }}\n"

# Runs in every page before its own scripts: when it loaded, and an id that
# changes with each navigation.
INIT_SCRIPT = """
window.__navigation = Math.random();
document.addEventListener("DOMContentLoaded", function () { window.__loaded = Date.now(); });
"""
# Looks at each animation frame until the h1 has the colour; notes when.
WATCH_COLOUR = """
(colour) => {
  window.__coloured = null;
  function look() {
    const h1 = document.getElementById("version");
    if (h1 && getComputedStyle(h1).color === colour) window.__coloured = Date.now();
    else requestAnimationFrame(look);
  }
  look();
}
"""


def start_server(runserver, directory, log):
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    process = subprocess.Popen(
        [sys.executable, runserver, "app:app", "127.0.0.1:0", "--static", "/static=static"],
        cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(log.name) as file:
            match = re.search(r"Starting development server at (http://\S+)", file.read())
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("runserver.py did not start; its log:\n" + open(log.name).read())


def pause():
    time.sleep(SETTLE + random.random() * JITTER)


def measure(page, directory):
    """Time SAVES app saves and SAVES stylesheet saves; two lists of seconds."""
    app_samples, css_samples = [], []
    for version in range(2, SAVES + 2):
        pause()
        saved = time.time()
        write_atomically(os.path.join(directory, "app.py"), APP.format(version=version))
        page.wait_for_function("document.getElementById('version') && "
                               "document.getElementById('version').textContent === %r"
                               % ("version-%d" % version), timeout=SAVE_TIMEOUT * 1000)
        loaded = page.evaluate("window.__loaded")
        app_samples.append(loaded / 1000 - saved)
        page.wait_for_timeout(300)      # the new page's script connects to the stream
    for red in range(100, 100 + 20 * SAVES, 20):
        pause()
        navigation = page.evaluate("window.__navigation")
        page.evaluate(WATCH_COLOUR, "rgb(%d, 0, 0)" % red)
        saved = time.time()
        write_atomically(os.path.join(directory, "static", "site.css"), CSS.format(red=red))
        page.wait_for_function("window.__coloured", timeout=SAVE_TIMEOUT * 1000)
        applied = page.evaluate("window.__coloured")
        if page.evaluate("window.__navigation") != navigation:
            raise SystemExit("the stylesheet save reloaded the page: it should be swapped in")
        css_samples.append(applied / 1000 - saved)
    return app_samples, css_samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runserver", default=os.path.join(HERE, "..", "runserver.py"))
    parser.add_argument("--screenshot", metavar="PNG", help="also save a screenshot of the page")
    parser.add_argument("--output-dir", default=HERE)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    runserver = os.path.abspath(args.runserver)
    directory = tempfile.mkdtemp(prefix="bench-livereload-")
    os.mkdir(os.path.join(directory, "static"))
    write_atomically(os.path.join(directory, "app.py"), APP.format(version=1))
    write_atomically(os.path.join(directory, "static", "site.css"), CSS.format(red=80))
    log = open(os.path.join(directory, "server.log"), "w+")
    process, url = start_server(runserver, directory, log)
    failed = True
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))   # the server stops too
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.add_init_script(INIT_SCRIPT)
            page.goto(url)
            page.wait_for_timeout(500)          # its script connects to the stream
            app_samples, css_samples = measure(page, directory)
            if args.screenshot:
                page.screenshot(path=args.screenshot)
            browser.close()
        failed = False
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(10)
        log.close()
        if failed:
            print("server log kept in", directory, file=sys.stderr)
        else:
            shutil.rmtree(directory, True)
    write_results(args.output_dir, runserver, app_samples, css_samples)


def write_results(output_dir, runserver, app_samples, css_samples):
    app_median, css_median = statistics.median(app_samples), statistics.median(css_samples)
    machine, _ = machine_info()
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    row = "| %s | %.3f | %.3f | %.3f | %s |"
    lines = [
        "# Live reload",
        "",
        "Run %s on %s; Python %s; %s." % (
            datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            machine, sys.version.split()[0], version),
        "",
        "Command: `flock /tmp/bench.lock /work/venv/bin/python bench/livereload.py`",
        "",
        "runserver.py: %s." % runserver_fingerprint(runserver),
        "",
        "## Save → the open page shows it (headless Chromium, %d saves each, atomic rename)"
        % SAVES,
        "",
        "| save | median (s) | min (s) | max (s) | samples (s) |",
        "|---|---:|---:|---:|---|",
        row % ("app.py → page reloaded with the new text", app_median, min(app_samples),
               max(app_samples), ", ".join("%.3f" % x for x in app_samples)),
        row % ("--static stylesheet → new style applied, no navigation", css_median,
               min(css_samples), max(css_samples), ", ".join("%.3f" % x for x in css_samples)),
        "",
        "From the save (the rename) to the new page's DOMContentLoaded, or to the first "
        "animation frame with the new colour; default --reload-interval (0.25 s), warm reloads.",
        "",
        "## Targets (runserver.py)",
        "",
        "| target | measured | goal | result |",
        "|---|---:|---:|---:|",
        "| save app.py → page shows the new content, median | %.3f s | ≤ %.2f s | **%s** |"
        % (app_median, APP_TARGET, "pass" if app_median <= APP_TARGET else "FAIL"),
        "| save a stylesheet → new style applied, no navigation, median | %.3f s | ≤ %.2f s | **%s** |"
        % (css_median, CSS_TARGET, "pass" if css_median <= CSS_TARGET else "FAIL"),
        "",
    ]
    with open(os.path.join(output_dir, "livereload.md"), "w") as file:
        file.write("\n".join(lines))
    with open(os.path.join(output_dir, "livereload.json"), "w") as file:
        json.dump({"app_seconds": app_samples, "css_seconds": css_samples}, file, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
