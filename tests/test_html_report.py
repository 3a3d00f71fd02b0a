"""The HTML report opens in a real browser: the smoke chain's report.html rendered in headless
Chromium (Debian's `chromium`; CI installs it) has no console errors, every plot present, loaded
and visible (on top where it lies, with ink in it), the verdict first, and a screenshot that is
not blank. Skips, saying why, where no Chromium is installed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import find_chromium, render
from tests.conftest import REPO

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium); "
                                                         "the HTML report is not rendered")
# the plots a chain with ground truth, word timestamps and timed runs must show
PLOTS = {"latency", "stages", "rtfx-by-length", "wer-by-length", "drift"}
# clips of the demo set; at bf16 the demo model hears unseen_voice_3 differently from fp32
CLIPS = ("heldout_1.wav", "heldout_4.wav", "unseen_voice_3.wav")

INSPECT = """(async () => {
  const plots = [];
  for (const figure of document.querySelectorAll('figure.plot')) {
    const img = figure.querySelector('img');
    figure.scrollIntoView({block: 'center'});
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
    if (img && !img.complete) await new Promise(done => { img.onload = done; img.onerror = done; });
    const box = img ? img.getBoundingClientRect() : {width: 0, height: 0, left: 0, top: 0};
    const style = img ? getComputedStyle(img) : null;
    const hit = img ? document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2) : null;
    let ink = null;
    try {  // share of pixels that are not white: a plot that drew nothing has none
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const context = canvas.getContext('2d');
      context.drawImage(img, 0, 0);
      const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let dark = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && data[i] + data[i + 1] + data[i + 2] < 600) dark++;
      ink = dark / (data.length / 4);
    } catch (error) { ink = 'unreadable: ' + error; }
    plots.push({name: figure.dataset.plot, loaded: !!img && img.complete && img.naturalWidth > 0,
                width: box.width, height: box.height, onTop: hit === img, ink: ink,
                visible: !!style && style.visibility === 'visible' && style.display !== 'none' && Number(style.opacity) > 0});
  }
  window.scrollTo(0, 0);
  const first = document.querySelector('main').firstElementChild.nextElementSibling;
  return {plots: plots, verdictFirst: first && first.id === 'verdict', verdict: first && first.textContent,
          title: document.querySelector('h1').textContent,
          headline: Array.from(document.querySelectorAll('#headline tbody tr td:first-child'))
                         .map(td => td.textContent),
          differences: document.querySelectorAll('.diff del, .diff ins').length,
          external: Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href'))
                         .filter(url => !url.startsWith('data:'))};
})()"""


def clips_manifest(folder: Path) -> Path:
    """A manifest of the demo set's CLIPS, with their truth."""
    lines = [json.loads(line) for line in (REPO / "demo" / "clips" / "manifest.jsonl").read_text().splitlines()]
    manifest = folder / "clips.jsonl"
    manifest.write_text("".join(json.dumps(dict(line, audio_filepath=str(REPO / "demo" / "clips" / line["audio_filepath"])))
                                + "\n" for line in lines if line["audio_filepath"] in CLIPS))
    return manifest


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    manifest = clips_manifest(folder)
    reports = folder / "reports"
    proc = subprocess.run([sys.executable, str(REPO / "check_accuracy_run_perf.py"), "--model", "demo", "--device", "cpu",
                           "--dtype", "bf16", "--min-match", "0", "--max-wer", "1", "--warmup", "0", "--runs", "2",
                           "--report-dir", reports, manifest], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert (reports / "report.md").is_file() and (reports / "report.json").is_file()
    return reports / "report.html"


def test_the_report_renders_in_chromium(smoke_report, tmp_path):
    from PIL import Image, ImageStat

    result = render(smoke_report, INSPECT, tmp_path / "report.png", executable=CHROMIUM)
    assert result["console_errors"] == []
    page = result["value"]
    assert page["verdictFirst"] and page["verdict"].startswith("PASS: checks passed, accuracy passed, perf passed")
    assert page["external"] == []  # one file: nothing fetched from anywhere
    plots = {p["name"]: p for p in page["plots"]}
    assert set(plots) == PLOTS, page["plots"]
    for plot in plots.values():
        assert plot["loaded"] and plot["visible"] and plot["onTop"], plot
        assert plot["width"] > 300 and plot["height"] > 100, plot
        assert isinstance(plot["ink"], float) and plot["ink"] > 0.01, plot
    assert page["differences"] >= 2  # unseen_voice_3's words, struck out and inserted

    image = Image.open(io.BytesIO(result["screenshot"])).convert("RGB")
    assert image.width >= 1000 and image.height > 1500  # the whole page, not the first screen
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200
    background = max(colours)[0] / (image.width * image.height)
    assert background < 0.9 and max(ImageStat.Stat(image.convert("L")).stddev) > 20


@pytest.mark.parametrize("kind", ["accuracy", "perf"])
def test_the_scripts_reports_render_too(smoke_report, tmp_path, kind):
    """accuracy_run.py --html and accuracy_run_perf.py --html write these pages from their own
    documents (the chain's stages hold the same documents)."""
    from common.report.html import accuracy_html, perf_html

    document = json.loads((smoke_report.parent / "report.json").read_text())[kind]
    page = tmp_path / f"{kind}.html"
    page.write_text(accuracy_html(document) if kind == "accuracy" else perf_html(document))
    result = render(page, INSPECT, executable=CHROMIUM)
    assert result["console_errors"] == []
    plots = {p["name"]: p for p in result["value"]["plots"]}
    assert set(plots) == ({"rtfx-by-length", "wer-by-length", "drift"} if kind == "accuracy" else {"latency", "stages"})
    assert all(p["loaded"] and p["visible"] and p["onTop"] and p["ink"] > 0.01 for p in plots.values()), plots
    assert result["value"]["verdictFirst"] and result["value"]["verdict"].startswith("PASS")
    if kind == "accuracy":  # every figure named by the comparison behind it, the sides with it
        assert result["value"]["title"] == ("Parakeet TDT accuracy: device vs reference, device vs truth, "
                                            "reference vs truth")
        assert result["value"]["headline"] == ["device vs reference (cpu bf16 vs cpu fp32)",
                                               "device vs truth (cpu bf16)", "reference vs truth (cpu fp32)"]
        assert result["value"]["verdict"].startswith("PASS: device vs reference: ")


def test_the_truth_only_report_names_its_one_comparison(tmp_path):
    """accuracy_run.py --reference none --html: the device against the truth only, said in the
    title, the verdict and the headline; no reference figure, no drift plot."""
    page = tmp_path / "truth.html"
    proc = subprocess.run([sys.executable, str(REPO / "accuracy_run.py"), "--model", "demo", "--device", "cpu",
                           "--reference", "none", "--warmup", "0", "--html", page, clips_manifest(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = render(page, INSPECT, executable=CHROMIUM)
    assert result["console_errors"] == []
    value = result["value"]
    assert value["title"] == "Parakeet TDT accuracy: device vs truth"
    assert value["verdictFirst"] and value["verdict"].startswith(f"PASS: device vs truth ({len(CLIPS)} file(s)): WER ")
    assert value["headline"] == ["device vs truth (cpu fp32)"]
    plots = {p["name"]: p for p in value["plots"]}
    assert set(plots) == {"rtfx-by-length", "wer-by-length"}
    assert all(p["loaded"] and p["visible"] and p["onTop"] and p["ink"] > 0.01 for p in plots.values()), plots
    text = page.read_text()
    assert "device vs reference" not in text and "exact transcript matches" not in text and "paired" not in text
