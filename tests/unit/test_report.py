"""report.html from recorded runs: tests/fixtures/grpo_metrics.jsonl (a real 5-step GRPO run of SmolLM2-135M on
addition with beta > 0, so loss and KL move; recorded before held-out accuracy came from the strict scorer, so
its eval records carry eval/pass_rate) and tests/fixtures/grpo_tiny_run (the current format). Every panel the
metrics support, PNGs beside the page and inlined in it, no network references, a pipeline run dir's tables."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from report.plots import PANELS, panel_lines
from report.records import read_jsonl
from report.render import render_report

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "grpo_metrics.jsonl"
TINY_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "grpo_tiny_run"
ALL_PANELS = {p.slug for p in PANELS}


def test_a_grpo_run_dir_gets_every_panel(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "metrics.jsonl")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "step": 99, "reward_m')  # a record being written right now
    html_path = render_report(run)
    html = html_path.read_text()
    pngs = sorted((run / "report_files").glob("*.png"))
    assert {p.stem.split("-", 1)[1] for p in pngs} == ALL_PANELS
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == len(pngs)
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not load anything from the network"
    assert "<script" not in html


def test_panels_use_what_the_records_have() -> None:
    records = read_jsonl(FIXTURE)
    kl = next(p for p in PANELS if p.slug == "kl")
    labels = [line.label for line in panel_lines(kl, records)]
    assert "train: loss/kl" in labels
    reward = next(p for p in PANELS if p.slug == "reward")
    mean = next(line for line in panel_lines(reward, records) if line.label == "train: reward_mean")
    assert len(mean.std) == len(mean.ys) == len([r for r in records if r["kind"] == "train"])
    eval_only = [r for r in records if r["kind"] == "eval"]
    assert {p.slug for p in PANELS if panel_lines(p, eval_only)} == {"heldout_step", "heldout_time", "length",
                                                                    "staleness", "status_eval"}  # fmt: skip


def test_pipeline_run_dir_tables(tmp_path: Path) -> None:
    run = tmp_path / "pipe"
    (run / "grpo").mkdir(parents=True)
    (run / "eval").mkdir()
    shutil.copy(FIXTURE, run / "grpo" / "metrics.jsonl")
    items = [{"task_id": "t1", "prompt": "What is 12+30?", "completion": "42", "verdict": "passed"},
             {"task_id": "t2", "prompt": "What is 1+1?", "completion": "3", "verdict": "failed"}]
    for model in ("base", "grpo"):  # the evaluator's layout: <eval stage>/<model>/eval_samples.jsonl
        (run / "eval" / model).mkdir()
        (run / "eval" / model / "eval_samples.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    # The training stage's own held-out rows (two evaluations): left out when an eval stage exists.
    (run / "grpo" / "eval_samples.jsonl").write_text(json.dumps({"step": 5, **items[0], "completion": "41"}) + "\n")
    manifest = {"name": "demo", "git_commit": "0123456789abcdef", "stages": [
        {"name": "grpo", "kind": "grpo", "dir": "grpo", "status": "done", "output": "/x/grpo/model",
         "input_model": "base", "wall_s": 125.0, "result": {"accuracy": 0.9, "size_bytes": 3 * 2**20}},
        {"name": "eval", "kind": "eval", "dir": "eval", "status": "done", "output": "/x/eval/eval.json",
         "result": {"models": {"/x/grpo/model": {"label": "grpo", "accuracy": 0.5, "pass@2": 0.75},
                               "/m/base": {"label": "base", "accuracy": 0.25, "pass@2": 0.5}}}},
        {"name": "export", "kind": "export", "dir": "export", "status": "failed", "error": "RuntimeError: <boom>"},
    ]}  # fmt: skip
    (run / "manifest.json").write_text(json.dumps(manifest))
    html = render_report(run, tmp_path / "out").read_text()
    assert "rlvr report: demo" in html and "git 0123456789ab" in html
    row = re.search(r"<tr><td>grpo</td>.*?</tr>", html, re.S)
    assert row is not None
    for cell in ("done", "/x/grpo/model", "50.0%", "3.0 MiB", "2m05s"):  # the exam's accuracy, not its own 90%
        assert f"<td>{cell}</td>" in row.group(0)
    base = re.search(r"<tr><td>base \(input\)</td>.*?</tr>", html, re.S)
    assert base is not None and "<td>25.0%</td>" in base.group(0)
    assert "RuntimeError: &lt;boom&gt;" in html  # escaped by the template engine
    assert "What is 12+30?" in html and "<pre>42</pre>" in html and 'class="failed">failed' in html
    assert html.index("<th>eval/grpo</th>") < html.index("<th>eval/base</th>")  # the exam's model order
    assert "<pre>41</pre>" not in html
    assert "no metrics recorded yet" in html  # the export stage has none
    assert (tmp_path / "out" / "report_files" / "grpo-reward.png").is_file()
    assert (tmp_path / "out" / "report_files" / "eval-models.png").is_file()


def test_report_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rlvr.cli import app

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "metrics.jsonl")
    out = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "html")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "html" / "report.html").is_file() and "report: " in out.output
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output


def test_a_lone_run_dir_in_the_current_format(tmp_path: Path) -> None:
    """tests/fixtures/grpo_tiny_run: a real 3-step tiny-model GRPO run's metrics.jsonl, config.json and
    eval_samples.jsonl as the trainer writes them now (strict-scorer eval/accuracy, eval/rewards/*)."""
    run = tmp_path / "run"
    shutil.copytree(TINY_RUN, run)
    html = render_report(run).read_text()
    assert "(grpo)" in html  # recognised from its config.json
    assert "step 3 of 3, 14s wall time; last held-out accuracy 0.0%" in html
    records = read_jsonl(run / "metrics.jsonl")
    heldout = next(p for p in PANELS if p.slug == "heldout_step")
    assert "eval: eval/accuracy" in [line.label for line in panel_lines(heldout, records)]
    status = next(p for p in PANELS if p.slug == "status_eval")
    assert [line.label for line in panel_lines(status, records)] == ["eval: eval/rewards/status/math/failed"]
    # The sample table shows the last held-out evaluation's answers (step 3 of 0..3), one row per task.
    rows = [json.loads(x) for x in (run / "eval_samples.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["step"] == max(x["step"] for x in rows)]
    assert html.count("<tr><td><pre>") == len(last) == 4
    assert f"<pre>{last[0]['completion']}</pre>" in html
