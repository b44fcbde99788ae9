"""Look at the html report and the grouped MLflow view as a person would: headless Chromium.

Run by `nox -s browser` (needs Debian's `chromium`): trains a tiny ablation sweep (and a second configuration of
one method), writes the html
report and screenshots it, starts `bench ui`, screenshots the grouped runs view, and checks the
rendered pages (tables, embedded figures, the grouping). Exit code 0 when every check passes.

    python tests/browser/check_pages.py OUT_DIR
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SWEEP = """\
name: tinyablation
description: a small ablation of the TPAMI 2023 model on synthetic data (the README's screenshots)
seeds: [0, 1, 2]
split: {val: 0.15, test: 0.25, seed: 0}
datasets:
  - name: synthetic
    params: {n: 600, num_labels: 8}
  - name: synthetic
    label: synthetic-b
    params: {n: 600, num_labels: 12, seed: 1}
methods:
  - pgnn_con
  - pgnn_con/no_gan
  - pgnn_con/no_con
  - dagnn
  - label_regression
overrides:
  synthetic: {"*": {D: 32, epochs: 4, batch: 100, lr: 1.0e-3}}
  synthetic-b: {"*": {D: 32, epochs: 4, batch: 100, lr: 1.0e-3}}
"""
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run", "--disable-extensions"]
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("no chromium here: apt-get install chromium")


def shoot(url: str, png: Path, size: str, wait_ms: int) -> str:
    """Screenshot `url` into `png`; returns the rendered DOM."""
    chrome = chromium()
    subprocess.run([chrome, *CHROME_FLAGS, f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
                    f"--screenshot={png}", url], check=True, capture_output=True, timeout=240)
    dom = subprocess.run([chrome, *CHROME_FLAGS, f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
                          "--dump-dom", url], check=True, capture_output=True, text=True, timeout=240).stdout
    return dom


def check(condition: bool, what: str) -> None:
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        sys.exit(1)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results"
    sweep = out / "tinyablation.yaml"
    sweep.write_text(SWEEP)
    subprocess.run([*BENCH, "run", str(sweep), "--results", str(results), "--threads", "1"], check=True)
    # a second configuration of one method in the same sweep folder: the MLflow view must keep it apart
    subprocess.run([*BENCH, "run", str(sweep), "--results", str(results), "--threads", "1",
                    "-s", "label_regression", "methods.label_regression.lam=10"], check=True)
    html = out / "report.html"
    subprocess.run([*BENCH, "report", "tinyablation", "--results", str(results), "--format", "html",
                    "-o", str(html)], check=True)
    dom = shoot(html.resolve().as_uri(), out / "report.png", "1300,1500", 5000)
    check(dom.count("<table") >= 2, "html report: main and ablation tables rendered")
    check(len(re.findall(r'<img[^>]+src="data:image/png;base64,', dom)) >= 4, "html report: figures embedded")
    check("<caption>" in dom and "Mean ± sample standard deviation over seeds." in dom,
          "html report: the main table has its caption and legend")
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", dom)
    check(bool(captions) and not any(re.fullmatch(r"[\w.-]+", c) for c in captions),
          "html report: figure captions say what each figure shows (not file names)")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen([*BENCH, "ui", "--results", str(results), "--port", str(port), "--wait", "240"],
                          stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            line = ui.stdout.readline()
            if not line:
                break
            m = re.search(r"tinyablation: (http://\S+)", line)
            url = m.group(1) if m else None
        check(url is not None, f"bench ui printed a link ({url})")
        dom = shoot(url, out / "mlflow.png", "1900,1000", 40000)
        check("Group by" in dom and "test/map_avg" in dom, "MLflow view: grouped, test metrics as columns")
        check("pgnn_con/no_gan" in dom, "MLflow view: the variants are listed")
        groups = set(re.findall(r"label_regression \[lam=[0-9.e+-]+\]", dom))
        check(len(groups) >= 2, f"MLflow view: the two label_regression configurations are separate groups "
                                f"({sorted(groups)})")
    finally:
        os.killpg(ui.pid, signal.SIGINT)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
    print(f"screenshots: {out / 'report.png'} {out / 'mlflow.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/browser"))
