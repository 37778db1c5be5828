"""`facegraph report` on run directories written by hand to the contract of docs/run-directory.md, and the page
rendered in headless Chromium."""

import base64
import csv
import html.parser
import json
import re
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegraph.analysis.report import write_report
from facegraph.cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FEATURES = {"gender": ["male", "female"], "eye_color": ["black", "brown", "blue"], "age": ["<35", "35-45", "45-55", ">55"]}
NUM_GATES = 8
GENDER_GATE = 2  # 0-based: this gate opens exactly for female images


def _write_dataset(root: Path, identities: list[dict]) -> list[str]:
    paths = []
    generator = np.random.default_rng(1)
    for person in identities:
        for index in range(person["images"]):
            path = f"images/{person['name']}/{index:03d}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(generator.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / path)
            paths.append(path)
    return paths


def make_gated_run(tmp_path: Path, name: str = "aig-run", num_identities: int = 6, images_each: int = 20) -> Path:
    """An evaluated ConvNet-AIG-like run whose gate GENDER_GATE copies gender and whose wrong predictions use few gates."""
    generator = np.random.default_rng(0)
    identities = [{"name": f"Person_{i}", "images": images_each, "gender": FEATURES["gender"][i % 2],
                   "age": FEATURES["age"][i % 4]} for i in range(num_identities)]
    dataset_root = tmp_path / "dataset"
    paths = _write_dataset(dataset_root, identities)
    run = tmp_path / "runs" / name
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name, "model": {"arch": "resnet18", "variant": "aig"}, "loss": {"target_rate": 0.5}}))
    (run / "dataset.json").write_text(json.dumps({
        "root": str(dataset_root), "image_size": 24, "center_crop": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3,
        "identities": [p["name"] for p in identities], "features": FEATURES,
    }))
    epochs = [{"epoch": e, "lr": 0.1, "train": {"loss": 3.0 - e, "top1": 0.2 * e, "top5": 0.3 * e, "gate_rates": [0.5] * NUM_GATES},
               "val": {"top1": 0.15 * e, "top5": 0.25 * e, "gmacs_mean": 0.1, "gate_rates": [0.5] * NUM_GATES}} for e in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    rows = []
    sample = 0
    for identity, person in enumerate(identities):
        for _ in range(person["images"]):
            gates = generator.integers(0, 2, NUM_GATES)
            gates[GENDER_GATE] = int(person["gender"] == "female")
            correct = int(generator.random() < gates.sum() / NUM_GATES)
            rows.append({
                "sample": sample, "path": paths[sample], "identity": identity, "name": person["name"],
                "predicted": identity if correct else (identity + 1) % num_identities, "correct": correct,
                "top5_correct": 1, "confidence": 0.5, "gmacs": 0.1 + 0.01 * gates.sum(), "active_gates": int(gates.sum()),
                "gates": "".join(str(g) for g in gates), "gender": person["gender"], "eye_color": "unknown",
                "age": person["age"], "readout_gender": person["gender"],
            })
            sample += 1
    with (run / "eval" / "test-images.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (run / "eval" / "test.json").write_text(json.dumps({
        "split": "test", "images": len(rows), "top1": float(np.mean([r["correct"] for r in rows])), "top5": 1.0,
        "gmacs": {"mean": 0.14, "std": 0.02, "dense": 0.18, "counted": "conv+linear+norm"},
        "gflops": {"mean": 0.28, "std": 0.04}, "gate_rates": [0.5] * NUM_GATES, "gated_blocks": list(range(1, NUM_GATES + 1)),
        "readout": {"gender": {"method": "train-prototypes", "labels": ["male", "female"], "accuracy": 1.0, "images": len(rows),
                               "confusion": [[60, 0], [0, 60]]}},
    }))
    return run


def make_resnet_run(tmp_path: Path, name: str = "resnet-run") -> Path:
    """An evaluated plain ResNet run: no gates at all."""
    run = tmp_path / "runs" / name
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name, "model": {"arch": "resnet18", "variant": "resnet"}}))
    (run / "dataset.json").write_text(json.dumps({"root": str(tmp_path / "dataset"), "image_size": 24, "mean": [0.5] * 3,
                                                  "std": [0.5] * 3, "identities": ["A", "B"], "features": {"gender": ["male", "female"]}}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train": {"top1": 0.4, "top5": 0.9, "gate_rates": []},
                                                   "val": {"top1": 0.35, "top5": 0.8, "gate_rates": []}}) + "\n")
    (run / "eval" / "test.json").write_text(json.dumps({"split": "test", "images": 2, "top1": 0.5, "top5": 1.0,
                                                         "gmacs": {"mean": 0.2, "std": 0.0, "dense": 0.2}, "gate_rates": [],
                                                         "gated_blocks": [], "readout": {}}))
    (run / "eval" / "test-images.csv").write_text(
        "sample,path,identity,name,predicted,correct,top5_correct,confidence,gmacs,active_gates,gates,gender\n"
        "0,images/a.png,0,A,0,1,1,0.9,0.2,0,,male\n1,images/b.png,1,B,0,0,1,0.6,0.2,0,,female\n"
    )
    return run


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def image_sources(page: str) -> list[str]:
    parser = _Images()
    parser.feed(page)
    return parser.sources


def test_report_figures_tables_and_numbers(tmp_path):
    gated, plain = make_gated_run(tmp_path), make_resnet_run(tmp_path)
    (tmp_path / "runs" / "table2.csv").write_text("model,top1,gmacs\nConvNet-AIG [t=0.5],41.67,0.140\n")
    report = write_report([gated, plain], tmp_path / "report")
    page = report.index.read_text()
    sources = image_sources(page)
    assert sources and len(sources) == len(report.figures)
    for source in sources:
        assert not Path(source).is_absolute()
        with Image.open(report.index.parent / source) as image:
            image.verify()
    names = {Path(s).name for s in sources}
    assert {"aig-run-fig1-curves.png", "resnet-run-fig1-curves.png", "aig-run-heatmap-gender.png",
            "aig-run-heatmap-age.png", "aig-run-fig5-easy-hard.png", "aig-run-fig5-active-gates.png"} <= names
    assert not any(name.startswith("resnet-run-heatmap") for name in names)
    assert "aig-run-heatmap-eye_color.png" not in names  # every eye colour is unknown
    # One Table II, from each eval/test.json (a table2.csv lying beside the runs is not shown a second time).
    summary = json.loads((gated / "eval" / "test.json").read_text())
    assert f"{100 * summary['top1']:.2f}" in page and "50.00" in page
    assert "as written by `facegraph table2`" not in page
    # The gate that copies gender makes it linearly decodable from the gate vector, folds by person.
    probe = re.search(r"gender: top.*?Linear probe on the gate vector \(fitted, (\d+) folds by person\): ([\d.]+)% "
                      r"\(balanced [\d.]+%, majority label [\d.]+%\)", page, re.S)
    assert probe is not None and float(probe.group(2)) > 95.0
    # The gate that copies gender is the most informative block, numbered 1..k, with I = H(gender) = 1 bit here.
    gender = next(r for r in report.features if r.heatmap.feature == "gender")
    assert gender.findings[0].block == GENDER_GATE + 1
    assert gender.findings[0].information_bits == pytest.approx(1.0)
    assert (gender.findings[0].most_open_label, gender.findings[0].most_open_rate) == ("female", 1.0)
    # Active gates: the comparison is of the CSV's own numbers.
    with (gated / "eval" / "test-images.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    correct = [int(r["active_gates"]) for r in rows if r["correct"] == "1"]
    wrong = [int(r["active_gates"]) for r in rows if r["correct"] == "0"]
    comparison = report.active_gates["aig-run"]
    assert comparison.correct_mean == pytest.approx(np.mean(correct)) and comparison.wrong_mean == pytest.approx(np.mean(wrong))
    assert comparison.wrong_mean < comparison.correct_mean and comparison.test.p_two_sided < 0.05
    assert "as the paper remarks" in page
    assert "A plain ResNet" in page


def test_report_command_and_errors(tmp_path, capsys):
    gated = make_gated_run(tmp_path)
    assert main(["report", str(gated), "--out", str(tmp_path / "out"), "--identities", "2"]) == 0
    out = capsys.readouterr().out
    assert "index.html" in out and f"gated block {GENDER_GATE + 1} tells most" in out
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out2")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    (gated / "eval" / "test-images.csv").write_text("sample,path\n0,a.png\n")
    assert main(["report", str(gated), "--out", str(tmp_path / "out3")]) == 2
    assert "missing column(s)" in capsys.readouterr().err


def test_report_of_an_unevaluated_run_still_has_curves(tmp_path):
    run = make_gated_run(tmp_path)
    shutil.rmtree(run / "eval")
    report = write_report([run], tmp_path / "report")
    assert [p.name for p in report.figures] == ["aig-run-fig1-curves.png"]
    assert "facegraph evaluate" in report.index.read_text()


def test_report_marks_the_evaluated_epoch_and_names_the_split(tmp_path, monkeypatch):
    import facegraph.analysis.report as report_module

    run = make_gated_run(tmp_path)
    (run / "done.json").write_text(json.dumps({"epochs": 3, "best_epoch": 2, "best_val_top1": 0.3}))
    evaluation = json.loads((run / "eval" / "test.json").read_text())
    (run / "eval" / "val.json").write_text(json.dumps({**evaluation, "split": "val", "checkpoint": "best"}))
    shutil.copy(run / "eval" / "test-images.csv", run / "eval" / "val-images.csv")
    drawn = {}
    for name in ("plot_accuracy_curves", "plot_feature_heatmap"):
        def keep(*args, _name=name, _original=getattr(report_module, name), **kwargs):
            drawn.setdefault(_name, []).append(_original(*args, **kwargs))
            return drawn[_name][-1]
        monkeypatch.setattr(report_module, name, keep)
    page = write_report([run], tmp_path / "report", split="val").index.read_text()
    # best.pt holds epoch 2's weights (done.json), so its score is drawn there, not at the last epoch 3.
    star = next(line for line in drawn["plot_accuracy_curves"][0].axes[0].get_lines() if line.get_marker() == "*")
    assert star.get_xdata().tolist() == [2]
    assert "placed at epoch 2, the epoch of best val top-1" in page and "running accuracy" in page
    assert all("label (val images)" in [axes.get_ylabel() for axes in figure.axes] for figure in drawn["plot_feature_heatmap"])
    assert "shuffles of the labels among people" in page and "largest I of any gated block" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4, NUL-separated JSON): no extra
    package, and unlike --screenshot it reports failed image loads and lets the test ask every <img> if it decoded."""

    def __init__(self, chromium: str, profile: Path, log) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire() -> None:
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=wire, close_fds=False,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._last_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._read(deadline))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (EOFError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def render_page(page: Path, screenshot: Path, profile: Path) -> tuple[list[list], list[str]]:
    """Load `page`, save a full-page screenshot 1200 px wide; return each <img> as [src, complete, naturalWidth]
    and the page's errors (console errors, uncaught exceptions, failed loads)."""
    with (profile.parent / f"{profile.name}.log").open("w") as log:
        browser = DevTools(_chromium(), profile, log)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Emulation.setDeviceMetricsOverride",
                         {"width": 1200, "height": 3000, "deviceScaleFactor": 1, "mobile": False}, session=session)
            browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired")
            images = json.loads(browser.send("Runtime.evaluate", {
                "expression": "JSON.stringify(Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth]))",
                "returnByValue": True}, session=session)["result"]["value"])
            height = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
            shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                           "clip": {"x": 0, "y": 0, "width": 1200, "height": height, "scale": 1}},
                                session=session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.close()
    errors = []
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(json.dumps(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params.get("exceptionDetails")))
        elif method == "Network.loadingFailed":
            errors.append(params.get("errorText", "load failed"))
    return images, errors


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install chromium; .ci/run does it)")
def test_page_renders_in_headless_chromium(tmp_path):
    report = write_report([make_gated_run(tmp_path), make_resnet_run(tmp_path)], tmp_path / "report")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report-page.png"
    screenshot.unlink(missing_ok=True)
    images, errors = render_page(report.index, screenshot, tmp_path / "profile")
    assert errors == []
    assert sorted(src for src, _, _ in images) == sorted(image_sources(report.index.read_text()))
    assert len(images) == len(report.figures)
    assert all(complete and width > 0 for _, complete, width in images), images
    with Image.open(screenshot) as shot:
        assert shot.width == 1200 and shot.height > 3000  # the whole page, longer than one screen
        assert np.asarray(shot.convert("L")).std() > 10  # not blank
    # The same checks catch a page whose image is missing.
    broken = report.index.parent / "broken.html"
    broken.write_text(report.index.read_text().replace('src="aig-run-heatmap-gender.png"', 'src="missing.png"'))
    images, errors = render_page(broken, tmp_path / "broken.png", tmp_path / "profile")
    assert any("ERR_FILE_NOT_FOUND" in error for error in errors)
    assert [src for src, _, width in images if width == 0] == ["missing.png"]


def test_runs_with_the_same_directory_name_get_their_own_figures(tmp_path):
    first = make_gated_run(tmp_path / "a", num_identities=4, images_each=6)
    second = make_gated_run(tmp_path / "b", num_identities=4, images_each=6)
    report = write_report([first, second], tmp_path / "report")
    names = [p.name for p in report.figures]
    assert "aig-run-heatmap-gender.png" in names and "aig-run-2-heatmap-gender.png" in names
    assert len(names) == len(set(names))
    assert set(report.active_gates) == {"aig-run", "aig-run-2"}


def test_seeds_and_folds_of_one_model_share_a_table_row(tmp_path):
    """Runs that differ only in their seed and cross-validation fold are one Table II row, also when one config.json
    was written before a key existed (here data.fold_seed, read as its default) and the other holds it."""
    runs = [make_gated_run(tmp_path, name=f"aig-seed{seed}", num_identities=4, images_each=6) for seed in (0, 1)]
    for seed, run in enumerate(runs):
        config = json.loads((run / "config.json").read_text())
        config.update({"name": "aig", "train": {"seed": seed},
                       "data": {"folds": 2, "fold": seed, **({"fold_seed": 0} if seed else {})}})
        (run / "config.json").write_text(json.dumps(config))
    page = write_report(runs, tmp_path / "report").index.read_text()
    assert "runs per row: aig-seed0, aig-seed1)" in page
    other = make_gated_run(tmp_path / "other", name="aig-seed2", num_identities=4, images_each=6)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "name": "aig",
                                                   "data": {"folds": 2, "fold": 0, "fold_seed": 1}}))
    page = write_report([*runs, other], tmp_path / "report-2").index.read_text()
    assert "runs per row: aig-seed0, aig-seed1; aig-seed2)" in page  # another partition is another row
