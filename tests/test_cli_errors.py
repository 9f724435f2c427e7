"""The operator's CLI (issue 39): a user error is one line on stderr naming the file, option or
value, with exit code 2 and no traceback; a bug keeps its traceback; every option has help and
shows its default; `run --help` lists the jobs; long commands say what they are doing.

Before issue 39, nine of the cases below printed a Python traceback (11 to 34 lines, exit code 1):
a missing --interactions or --rules file, interactions without the columns a split needs, an
unreadable Parquet file, `--rates abc`, `--end-date 31/10/2026`, `--customers 0`, a bad
TESSERA_SEED, `realtime audience` before any run, and `run --job nope` (25 lines)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tessera.cli import build_parser, main

FIXTURES = Path(__file__).parent / "fixtures"
PEOPLE, PEOPLE_MAPPING = FIXTURES / "people_small.csv", FIXTURES / "people_small_mapping.yaml"


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A data directory of its own, and the bad files the cases name."""
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path / "data"))
    # the dbt resource exports the warehouse's locations into os.environ for dbt's profile
    # (orchestration/resources.py): a graph test earlier in this worker leaves them behind
    for name in ("TESSERA_DUCKDB_PATH", "TESSERA_LANDING_DIR", "TESSERA_PUBLISH_DIR", "TESSERA_DUCKDB_TEMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "wrong_cols.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.yml").write_text("rules: [unclosed\n  - x: :\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not parquet")
    (tmp_path / "inter.csv").write_text(
        "customer_key,product_id,interaction_type,occurred_at\nc1,p1,purchase,2026-01-01\nc2,p2,view,2026-01-02\n"
    )
    return tmp_path


# (case, argv with {t} for the test's folder, extra environment, what the line must name)
CASES = [
    ("identity resolve: missing input", ["identity", "resolve", "{t}/nope.csv", "--config", str(PEOPLE_MAPPING),
     "--out", "{t}/o.csv"], {}, "{t}/nope.csv: file not found"),
    ("identity resolve: bad YAML mapping", ["identity", "resolve", str(PEOPLE), "--config", "{t}/bad.yml",
     "--out", "{t}/o.csv"], {}, "{t}/bad.yml: not valid YAML"),
    ("identity resolve: wrong columns", ["identity", "resolve", "{t}/wrong_cols.csv", "--config",
     str(PEOPLE_MAPPING), "--out", "{t}/o.csv"], {}, "{t}/wrong_cols.csv: the mapping"),
    ("identity resolve: missing --previous, before the work", ["identity", "resolve", str(PEOPLE), "--config",
     str(PEOPLE_MAPPING), "--out", "{t}/o.csv", "--previous", "{t}/nope.csv"], {}, "--previous {t}/nope.csv"),
    ("identity resolve: unknown --engine", ["identity", "resolve", str(PEOPLE), "--config", str(PEOPLE_MAPPING),
     "--out", "{t}/o.csv", "--engine", "nope"], {}, "invalid choice: 'nope'"),
    ("online-retail: missing --source", ["online-retail", "--source", "{t}/nope.parquet"], {},
     "{t}/nope.parquet is neither a file nor a folder"),
    ("online-retail: wrong columns", ["online-retail", "--source", "{t}/wrong_cols.csv"], {},
     "no column 'InvoiceNo' or 'Invoice' in wrong_cols.csv"),
    ("complete-journey: missing folder", ["complete-journey", "--source-dir", "{t}/nope"], {}, "{t}/nope"),
    ("sources check: missing landing", ["sources", "check", "--landing", "{t}/nope"], {}, "{t}/nope: no landing"),
    ("recommend evaluate: missing file", ["recommend", "evaluate", "--interactions", "{t}/nope.csv",
     "--holdout-days", "7"], {}, "--interactions {t}/nope.csv: no such file"),
    ("recommend evaluate: wrong columns", ["recommend", "evaluate", "--interactions", "{t}/wrong_cols.csv",
     "--holdout-days", "7"], {}, "no column customer_key, product_id, occurred_at (it has: a, b)"),
    ("recommend evaluate: unreadable Parquet", ["recommend", "evaluate", "--interactions", "{t}/broken.parquet",
     "--holdout-days", "7"], {}, "--interactions {t}/broken.parquet: cannot be read"),
    ("recommend evaluate: missing --user-features", ["recommend", "evaluate", "--interactions", "{t}/inter.csv",
     "--holdout-days", "7", "--user-features", "{t}/nope.csv"], {}, "--user-features {t}/nope.csv: no such file"),
    ("recommend evaluate: holdout without training", ["recommend", "evaluate", "--interactions", "{t}/inter.csv",
     "--holdout-days", "7"], {}, "{t}/inter.csv: a 7-day holdout"),
    ("recommend evaluate: unknown --models", ["recommend", "evaluate", "--interactions", "{t}/inter.csv",
     "--holdout-days", "7", "--models", "nope"], {}, "--models 'nope': unknown nope; one of lightfm_hybrid"),
    ("recommend evaluate: negative --holdout-days", ["recommend", "evaluate", "--interactions", "{t}/inter.csv",
     "--holdout-days", "-3"], {}, "argument --holdout-days: '-3': must be 1 or more"),
    ("recommend evaluate: --k 0", ["recommend", "evaluate", "--interactions", "{t}/inter.csv", "--holdout-days", "7",
     "--k", "0"], {}, "argument --k: '0': must be 1 or more"),
    ("recommend tune: missing file", ["recommend", "tune", "--interactions", "{t}/nope.csv", "--holdout-days", "7"],
     {}, "--interactions {t}/nope.csv: no such file"),
    ("recommend tune: unknown --families", ["recommend", "tune", "--interactions", "{t}/inter.csv",
     "--holdout-days", "7", "--families", "ease,nope"], {}, "--families 'ease,nope': unknown nope"),
    ("segments compile: missing rules", ["segments", "compile", "--rules", "{t}/nope.yml"], {},
     "--rules {t}/nope.yml: no such file"),
    ("segments compile: bad YAML", ["segments", "compile", "--rules", "{t}/bad.yml"], {},
     "invalid segment rules: {t}/bad.yml: not valid YAML"),
    ("decisioning validate: missing file", ["decisioning", "validate", "--file", "{t}/nope.yml"], {},
     "{t}/nope.yml: no action catalogue there"),
    ("decisioning simulate: rates not numbers", ["decisioning", "simulate", "--rates", "abc"], {},
     "argument --rates: 'abc'"),
    ("decisioning simulate: a rate above 1", ["decisioning", "simulate", "--rates", "0.1,1.5"], {},
     "'0.1,1.5': two or more conversion rates, each between 0 and 1"),
    ("decisioning simulate: empty audience", ["decisioning", "simulate", "--audience", "0"], {},
     "argument --audience: '0': must be 1 or more"),
    ("generate: not a date", ["generate", "--end-date", "31/10/2026"], {}, "'31/10/2026' is not a date"),
    ("generate: no customers", ["generate", "--customers", "0"], {}, "customers must be at least 1, got 0"),
    ("generate: bad setting", ["generate"], {"TESSERA_SEED": "abc"}, "TESSERA_SEED must be a whole number"),
    ("serve: missing publish folder", ["serve", "--publish-dir", "{t}/nope"], {},
     "TESSERA_PUBLISH_DIR {t}/nope is not a directory"),
    ("serve: no such port", ["serve", "--port", "99999"], {}, "argument --port: '99999': a port is 1 to 65535"),
    ("realtime audience: no warehouse", ["realtime", "audience"], {}, "no warehouse at {t}/data/tessera.duckdb"),
    ("run: bad setting", ["run"], {"TESSERA_MODE": "nope"}, "TESSERA_MODE must be one of demo, production"),
    ("run: unknown job", ["run", "--job", "nope"], {},
     "--job 'nope': no such job; the jobs are tessera_all, refresh_customer_view, retrain_recommender, publish"),
]  # fmt: skip


@pytest.mark.parametrize("case,argv,env,names", CASES, ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_naming_the_file_or_value_with_exit_code_2(
    files, capsys, monkeypatch, case, argv, env, names
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = [a.replace("{t}", str(files)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals (a bad --engine, --rates, --end-date)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"tessera {argv[0]}")
    assert names.replace("{t}", str(files)) in err


def test_a_bug_keeps_its_traceback_and_exit_code_1(monkeypatch):
    # only the kinds of error an operator can fix are turned into one line: anything else is a bug
    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr("tessera.cli._cmd_segments", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["segments", "compile"])


def test_an_error_inside_the_pipeline_run_keeps_its_traceback(tmp_path, monkeypatch):
    # the checks of `tessera run` passed: a missing file inside the run is a bug to see in full
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("tessera.cli.pipeline_jobs", lambda: {"tessera_all": "everything"})

    def run_pipeline(job_name, full_refresh, verbose=False):
        raise FileNotFoundError(2, "No such file or directory", "inside/the/run")

    monkeypatch.setattr("orchestration.run.run_pipeline", run_pipeline)
    with pytest.raises(FileNotFoundError):
        main(["run"])


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    from tessera.errors import UserError

    for argv in (["--debug", "segments", "compile"], ["segments", "compile", "--debug"]):
        with pytest.raises(UserError) as raised:
            main([*argv, "--rules", str(tmp_path / "nope.yml")])
        assert f"{tmp_path / 'nope.yml'}: no such file" in str(raised.value)


def test_version_comes_from_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tessera {version('tessera')}"


def _options(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _options(child, f"{path} {name}")
        elif action.help != argparse.SUPPRESS:
            yield path, parser, action


def test_every_option_of_every_command_has_help_and_shows_its_default():
    missing, no_default = [], []
    for path, parser, action in _options(build_parser(), "tessera"):
        name = "/".join(action.option_strings) or action.dest
        if not action.help:
            missing.append(f"{path} {name}")
            continue
        text = parser._get_formatter()._get_help_string(action) % {"default": action.default}
        has_default = action.default not in (None, False, argparse.SUPPRESS, [])
        if action.option_strings and has_default and "default" not in text:
            no_default.append(f"{path} {name}")
    assert missing == [], f"options without help: {missing}"
    assert no_default == [], f"options whose help hides their default: {no_default}"


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "people in the shop (default: 2000)" in out
    assert "last day of generated activity (default: 2026-10-31)" in out


def test_run_help_has_a_description_and_lists_the_jobs_from_the_definitions(capsys):
    from orchestration.definitions import defs

    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "Run a Dagster job of the asset graph" in out and "(default: tessera_all)" in " ".join(out.split())
    listed = dict(re.findall(r"^  (\w+) +(.+)$", out.split("jobs (--job):")[1], flags=re.M))
    assert (
        set(listed)
        == {job.name for job in defs.jobs}
        == {
            "tessera_all",
            "refresh_customer_view",
            "retrain_recommender",
            "publish",
        }
    )
    assert listed["tessera_all"].startswith("Landing files -> raw -> quality gates")


def test_identity_resolve_prints_a_line_per_phase_with_elapsed_time(tmp_path, capsys):
    out = tmp_path / "o.csv"
    assert main(["identity", "resolve", str(PEOPLE), "--config", str(PEOPLE_MAPPING), "--out", str(out)]) == 0
    lines = capsys.readouterr().err.splitlines()
    phases = [re.fullmatch(r"\[ *\d+\.\d s\] (\w[\w ]*?) done(?: in \d+\.\d s)?: (.+)", line) for line in lines]
    assert all(phases), lines
    said = {m.group(1): m.group(2) for m in phases}
    assert list(said) == ["load", "standardise", "block", "score", "check groups", "cluster", "write"]
    assert said["load"].startswith("read 10 records")
    assert said["standardise"] == "10 records, 1 deterministic pairs"
    assert said["block"] == "8 candidate pairs"
    assert said["cluster"] == "9 people, 0 links refused"
    assert said["write"] == f"10 rows to {out}"


def test_identity_resolve_quiet_prints_no_progress(tmp_path, capsys):
    argv = ["identity", "resolve", str(PEOPLE), "--config", str(PEOPLE_MAPPING), "--out", str(tmp_path / "o.csv")]
    assert main([*argv, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "10 records -> 9 people" in captured.out
