"""eval_wandb.py with W&B offline: the runs are read back from the `.wandb` files and the
table files they leave, and checked against the results files they came from."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from test_report import LM_EVAL_NAME, check_png, lm_eval_doc, results_root, results_template  # noqa: F401

import eval_wandb
from sfteval import cli, records
from sfteval.report import tables as report
from sfteval.report import wandb_log
from tests.conftest import help_probe

BLOCK = 32 * 1024  # the .wandb file is a leveldb-style log of 32 KiB blocks
RECORD_HEADER = struct.Struct("<IHB")  # crc32, length, type (1 full, 2 first, 3 middle, 4 last)


def wandb_records(path: Path):
    """The protobuf `Record`s of an offline run file, read with no W&B code but the message
    definitions (wandb 0.31 no longer ships a Python reader for the file)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + RECORD_HEADER.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < RECORD_HEADER.size:
            pos += room
            continue
        _, length, kind = RECORD_HEADER.unpack_from(data, pos)
        if length == 0 and kind == 0:  # zero padding up to the end of the block
            pos += room
            continue
        chunk = data[pos + RECORD_HEADER.size : pos + RECORD_HEADER.size + length]
        pos += RECORD_HEADER.size + length
        if kind == 1:
            payload = chunk
        elif kind == 2:
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        else:
            payload = pending + chunk
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _set_nested(target: dict, keys: list[str], value):
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def read_offline_run(run_dir: Path) -> dict:
    """name, job type, config, summary and tables (by logged key) of one offline run."""
    run = {"dir": run_dir, "config": {}, "summary": {}, "tables": {}}
    (wandb_file,) = run_dir.glob("run-*.wandb")
    for record in wandb_records(wandb_file):
        which = record.WhichOneof("record_type")
        if which == "run":
            run["name"] = record.run.display_name
            run["job_type"] = record.run.job_type
            run["id"] = record.run.run_id
            for item in record.run.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif which == "summary":
            for item in record.summary.update:
                keys = list(item.nested_key) or [item.key]
                _set_nested(run["summary"], keys, json.loads(item.value_json))
    for key, value in run["summary"].items():
        if isinstance(value, dict) and value.get("_type") == "table-file":
            table = json.loads((run_dir / "files" / value["path"]).read_text())
            run["tables"][key] = [dict(zip(table["columns"], row)) for row in table["data"]]
    return run


def offline_runs(root: Path) -> list[dict]:
    import wandb

    # run.finish() can return before wandb's service process has closed the run's file (seen on a
    # busy 2-core machine: a file without its run record); shutting the service down closes them.
    wandb.teardown()
    return [read_offline_run(d) for d in sorted((root / "wandb").glob("offline-run-*"))]


def run_named(root: Path, name: str) -> dict:
    (run,) = [r for r in offline_runs(root) if r["name"] == name]
    return run


@pytest.fixture
def offline(results_root, monkeypatch):  # noqa: F811
    """W&B in offline mode, writing under this test's folder. wandb keeps its settings in a
    process-wide singleton, so it is torn down around each test to see the new environment."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(results_root))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(results_root)
    wandb.teardown()
    yield results_root
    wandb.teardown()


def run_cli(args, capsys):
    rc = cli.run(eval_wandb.main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def lines_starting(out: str, prefix: str) -> int:
    return sum(line.startswith(prefix) for line in out.splitlines())


def scores_docs(root: Path) -> dict[str, dict]:
    return {p.name: records.read_json(p) for p in report.find_scores(root / "eval_responses")}


# ---------------------------------------------------------------------------------------------


def test_logs_every_file_once_and_a_comparison(offline, capsys):
    root = offline
    rc, out, err = run_cli(["--mmlu", "--compare", "--project", "sfteval-test"], capsys)
    assert rc == 0, err
    assert lines_starting(out, "logged: ") == 4 and "comparison logged" in out
    runs = {r["name"]: r for r in offline_runs(root)}
    assert len(runs) == 5

    # IFEval: config = the file's metadata, summary = metrics and intervals, per-prompt table
    for name, doc in scores_docs(root).items():
        run = runs[name.removesuffix(".scores.json")]
        assert run["job_type"] == "ifeval"
        meta = doc["metadata"]
        assert run["config"]["model"] == meta["model"] and run["config"]["precision"] == "4bit"
        assert run["config"]["adapter"] == meta["adapter"]
        assert run["config"]["prompt_set"]["sha256"] == meta["prompt_set"]["sha256"]
        assert run["config"]["logged_file_sha256"] == records.sha256_file(root / "eval_responses" / name)
        for key, _ in report.IFEVAL_METRICS:
            assert run["summary"][key] == pytest.approx(doc["summary"][key])
            assert run["summary"][f"{key}_ci_low"] == pytest.approx(doc["summary"][f"{key}_ci"][0])
            assert run["summary"][f"{key}_ci_high"] == pytest.approx(doc["summary"][f"{key}_ci"][1])
        assert run["summary"]["tokens_per_second"] == meta["tokens_per_second"]
        assert run["summary"]["peak_gpu_memory_gb"] == meta["peak_gpu_memory_gb"]
        table = run["tables"]["per_prompt"]
        assert [r["key"] for r in table] == [p["key"] for p in doc["per_prompt"]]
        assert [r["follow_all_strict"] for r in table] == [p["follow_all_strict"] for p in doc["per_prompt"]]
        assert [r["response"] for r in table] == [p["response"] for p in doc["per_prompt"]]
        per_inst = {r["instruction_id"]: r for r in run["tables"]["per_instruction"]}
        assert set(per_inst) == set(doc["per_instruction"])
        for inst, values in doc["per_instruction"].items():
            assert per_inst[inst]["strict_acc"] == pytest.approx(values["strict_acc"])
        # the per-instruction bar chart is registered for the W&B UI
        assert "per_instruction_strict_chart_table" in run["summary"]

    tiny = runs["Meta-Llama-3.1-8B_4bit_tinymmlu_20261120_110000"]
    assert tiny["job_type"] == "tinymmlu"
    assert tiny["summary"]["tinymmlu_accuracy"] == pytest.approx(0.66)
    assert tiny["summary"]["tinymmlu_n"] == 100
    assert len(tiny["tables"]["items"]) == 100
    assert sum(r["correct"] for r in tiny["tables"]["items"]) == 66

    lm = runs[f"lora_model_4bit_{LM_EVAL_NAME.removesuffix('.json')}"]
    assert lm["job_type"] == "lm_eval"
    assert lm["summary"]["lm_eval/tinyMMLU/acc_norm"] == pytest.approx(0.6183)
    assert lm["summary"]["wall_seconds"] == pytest.approx(52.71)
    assert (lm["config"]["model"], lm["config"]["adapter"], lm["config"]["precision"]) == (
        "unsloth/Meta-Llama-3.1-8B",
        "lora_model_4bit",
        "4bit",
    )
    assert lm["config"]["lm_eval"]["n-samples"]["tinyMMLU"]["effective"] == 100

    comparison = next(r for r in runs.values() if r["job_type"] == "comparison")
    wide = {(r["adapter"], r["precision"]): r for r in comparison["tables"]["results"]}
    docs = scores_docs(root)
    base_doc = next(d for d in docs.values() if d["metadata"]["adapter"] is None)
    assert wide[("", "4bit")]["prompt_level_strict_acc"] == pytest.approx(
        100 * base_doc["summary"]["prompt_level_strict_acc"], abs=0.005
    )
    assert wide[("", "4bit")]["tinymmlu"] == pytest.approx(66.0)
    assert wide[("lora_model_4bit", "4bit")]["tinymmlu"] == pytest.approx(61.83)
    assert wide[("lora_model_4bit", "4bit")]["tokens_per_second"] == 790.25
    long = comparison["tables"]["results_long"]
    assert len(long) == 2 * 5  # two rows x (four IFEval metrics + tinyMMLU)

    # local files: results.md with the same numbers, and its charts
    text = (root / "results.md").read_text()
    assert (
        report.format_acc(base_doc["summary"]["inst_level_loose_acc"], base_doc["summary"]["inst_level_loose_acc_ci"])
        in text
    )
    check_png(root / "results_accuracy.png")
    check_png(root / "results_speed_memory.png")

    # the index records each file under its checksum
    index = json.loads((root / "eval_responses" / ".wandb_index.json").read_text())
    assert len(index["files"]) == 2 and len(index["comparisons"]) == 1
    for digest, entries in index["files"].items():
        (entry,) = entries
        assert records.sha256_file(root / "eval_responses" / entry["file"]) == digest
        assert entry["mode"] == "offline" and entry["project"] == "sfteval-test"
        assert runs[entry["run_name"]]["id"] == entry["run_id"]

    # re-running logs nothing new and writes nothing new
    before = sorted(p.name for p in root.iterdir())
    rc, out, err = run_cli(["--mmlu", "--compare", "--project", "sfteval-test"], capsys)
    assert rc == 0, err
    assert lines_starting(out, "already logged: ") == 4 and "comparison already logged" in out
    assert "results.md is up to date" in out
    assert len(offline_runs(root)) == 5
    assert sorted(p.name for p in root.iterdir()) == before

    # another project is another destination: logged there too
    rc, out, _ = run_cli(
        ["--input", *sorted((root / "eval_responses").glob("*.scores.json"))[:1], "--project", "other"], capsys
    )
    assert rc == 0 and lines_starting(out, "logged: ") == 1 and "already" not in out
    assert len(offline_runs(root)) == 6


def test_only_new_files_are_logged(offline, capsys):
    root = offline
    rc, out, _ = run_cli([], capsys)
    assert rc == 0 and lines_starting(out, "logged: ") == 2
    assert not (root / "results.md").exists()  # no --compare/--markdown: W&B only
    records.write_json_atomic(
        root / "eval_results" / "extra" / "results_2026-11-21T09-00-00.000001.json", lm_eval_doc(0.7)
    )
    rc, out, _ = run_cli(["--mmlu"], capsys)
    assert rc == 0
    assert lines_starting(out, "already logged: ") == 2 and lines_starting(out, "logged: ") == 3
    extra = run_named(root, "extra_results_2026-11-21T09-00-00.000001")
    assert extra["summary"]["lm_eval/tinyMMLU/acc_norm"] == pytest.approx(0.7)
    assert len(offline_runs(root)) == 5  # 2 IFEval, then tinyMMLU and two lm-eval files


def test_without_the_wandb_package_local_files_are_still_written(results_root, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(results_root)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    rc, out, err = run_cli(["--mmlu"], capsys)
    assert rc == 0
    assert err.strip().splitlines() == [
        "notice: wandb is not installed (pip install wandb); nothing is logged, results.md is written locally"
    ]
    assert (results_root / "results.md").is_file() and not (results_root / "wandb").exists()
    assert not (results_root / "eval_responses" / ".wandb_index.json").exists()


def test_no_wandb_writes_only_local_files(offline, capsys):
    root = offline
    rc, out, err = run_cli(["--no-wandb", "--markdown", "out/table.md"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (root / "out").iterdir()) == [
        "table.md",
        "table_accuracy.png",
        "table_speed_memory.png",
    ]
    text = (root / "out" / "table.md").read_text()
    assert text.count("| unsloth/Meta-Llama-3.1-8B |") == 2  # both folders are tabulated
    assert not (root / "wandb").exists()


def test_disabled_mode_records_nothing(offline, monkeypatch, capsys):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "disabled")
    wandb.teardown()
    rc, out, _ = run_cli([], capsys)
    assert rc == 0 and out.count("not recorded (W&B disabled)") == 2
    assert not (offline / "eval_responses" / ".wandb_index.json").exists()


def test_report_failure_falls_back_to_a_comparison_run(offline, monkeypatch, capsys):
    def no_report(*args, **kwargs):
        raise RuntimeError("the report API needs a network")

    monkeypatch.setattr(wandb_log, "report_possible", lambda: True)
    monkeypatch.setattr(wandb_log, "save_report", no_report)
    results = [report.read_result_file(p, ["ifeval_scores"]) for p in report.find_scores(offline / "eval_responses")]
    rows = report.build_rows(results)
    outcome = wandb_log.log_comparison(rows, [], "# Results", wandb_log.Destination("p"), offline / "eval_responses")
    out = capsys.readouterr().out
    assert "could not save a W&B Report (RuntimeError: the report API needs a network)" in out
    assert outcome.status == "logged" and run_named(offline, outcome.entry["run_name"])["job_type"] == "comparison"


@pytest.mark.parametrize(
    "setup,args,message",
    [
        (lambda root: None, ["--responses-dir", "empty"], "nothing to log: no empty/*.scores.json"),
        (lambda root: None, ["--input", "eval_responses/nope.scores.json"], "does not exist"),
        (
            lambda root: None,
            ["--input", "eval_responses/Meta-Llama-3.1-8B_4bit_20261120_101500.json"],
            "holds ifeval_responses, expected ifeval_scores, tinymmlu_results, lm_eval; score it first",
        ),
        (
            lambda root: (root / "eval_responses" / ".wandb_index.json").write_text('{"kind": "other"}'),
            [],
            "is not a W&B index written by eval_wandb.py",
        ),
        (lambda root: (root / "eval_responses" / "bad.scores.json").write_text("{nope"), [], "is not valid JSON"),
    ],
)
def test_one_line_errors(offline, capsys, setup, args, message):
    (offline / "empty").mkdir()
    setup(offline)
    rc, out, err = run_cli(args, capsys)
    assert rc == 2 and message in err, err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (offline / "wandb").exists()


def test_help_is_instant_and_light():
    done, loaded = help_probe("eval_wandb.py", ("torch", "wandb", "matplotlib", "lm_eval", "numpy"))
    assert done.returncode == 0, done.stderr
    assert "--compare" in done.stdout and "--mmlu" in done.stdout and "--no-wandb" in done.stdout
    assert loaded == "LOADED []"


def test_a_failing_wandb_init_is_a_one_line_error(offline, monkeypatch, capsys):
    import wandb

    def refuse(**kwargs):
        raise wandb.errors.UsageError("api_key not configured (no-tty).\ncall wandb.login(key=[your_api_key])")

    monkeypatch.setattr(wandb, "init", refuse)
    rc, out, err = run_cli(["--compare"], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "could not start a W&B run (UsageError: api_key not configured (no-tty).); run `wandb login`" in err
    assert (offline / "results.md").is_file()  # the local files were written first
    assert not (offline / "eval_responses" / ".wandb_index.json").exists()


class ServerStandIn:
    """The few wandb calls log_file makes, answered as an online W&B would; records each run's name."""

    def __init__(self):
        from types import SimpleNamespace

        self.started = []
        self.plot = SimpleNamespace(bar=lambda *args, **kwargs: "bar chart")
        self.Table = lambda **kwargs: "table"
        self.Settings = lambda **kwargs: kwargs

    def init(self, name, **kwargs):
        from types import SimpleNamespace

        self.started.append(name)
        return SimpleNamespace(
            id=f"online{len(self.started)}", name=name, offline=False, disabled=False, url="https://wandb.ai/x",
            log=lambda data: None, summary={}, finish=lambda: None,
        )  # fmt: skip


def test_a_file_logged_offline_is_still_uploaded_once_online(offline, monkeypatch, capsys):
    rc, out, _ = run_cli([], capsys)
    assert rc == 0 and lines_starting(out, "logged: ") == 2
    assert out.count("(offline; upload it with `wandb sync ") == 2
    rc, out, _ = run_cli([], capsys)
    assert lines_starting(out, "already logged: ") == 2 and "wandb sync" in out  # offline again: nothing new

    monkeypatch.setenv("WANDB_MODE", "online")
    server = ServerStandIn()
    dest = wandb_log.Destination.from_args(None, None)
    scores = report.find_scores(offline / "eval_responses")
    outcomes = [wandb_log.log_file(report.read_result_file(p, ["ifeval_scores"]), dest, server) for p in scores]
    assert [o.status for o in outcomes] == ["logged", "logged"] and len(server.started) == 2
    again = [wandb_log.log_file(report.read_result_file(p, ["ifeval_scores"]), dest, server) for p in scores]
    assert [o.status for o in again] == ["already logged"] * 2 and len(server.started) == 2
    index = records.read_json(offline / "eval_responses" / wandb_log.INDEX_NAME)
    assert sorted(e["mode"] for entries in index["files"].values() for e in entries) == ["offline"] * 2 + ["online"] * 2
