"""`tessera sources list | map | check`: bring a shop's exports in by configuration."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tessera.errors import UserError
from tessera.landing.mapping import MappingReport, run_mapping
from tessera.landing.mapping_schema import BUILT_IN_DIR, Mapping, MappingError, load_mapping, mapping_path
from tessera.landing.preflight import CheckReport, check_landing
from tessera.settings import load_settings


def print_mapping_report(report: MappingReport, out=None) -> None:
    out = out or sys.stdout
    for name, found in report.inputs.items():
        print(
            f"  input {name:<16} {found['records']:>10,} records in {len(found['files'])} {found['format']} file(s)",
            file=out,
        )
    for name, found in report.outputs.items():
        print(f"  {name:<18} {found['rows']:>10,} rows", file=out)
    for name, rules in report.classified.items():
        for rule, rows in rules.items():
            print(
                f"  classified in {name}: {rule} {rows:,} rows (left out, kept in _mapping/classified.parquet)",
                file=out,
            )
    for problem in report.problems:
        print(f"  WARNING {problem}", file=out)


def print_check_report(report: CheckReport, out=None) -> None:
    out = out or sys.stdout
    for source, rows in report.rows.items():
        print(f"  {source:<22} {rows:>10,} rows", file=out)
    for finding in report.findings:
        print(f"  {finding}", file=out)
    errors = len(report.errors)
    print(
        f"{errors} error(s), {len(report.findings) - errors} warning(s) in {report.seconds:.1f} s"
        + ("" if errors else ": ready to run"),
        file=out,
    )


def _mapping(args) -> Mapping:
    return load_mapping(mapping_path(args.mapping))


def _inputs(args, mapping: Mapping) -> dict[str, Path] | Path:
    if len(args.input) == 1 and "=" not in args.input[0]:
        return Path(args.input[0])
    given = {}
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep or name not in mapping.inputs:
            raise MappingError(f"--input {item!r}: give one path, or NAME=PATH per input ({', '.join(mapping.inputs)})")
        given[name] = Path(path)
    return given


def cmd_list(args: argparse.Namespace) -> int:
    for path in sorted(BUILT_IN_DIR.glob("*.yml")):
        mapping = load_mapping(path)
        print(f"{mapping.name:<20} {' '.join(mapping.description.split())[:110]}")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    try:
        mapping = _mapping(args)
        landing = Path(args.landing) if args.landing else load_settings().landing_dir
        report = run_mapping(mapping, _inputs(args, mapping), landing)
    except MappingError as exc:  # one line on stderr, exit code 2 (tessera/cli.py main)
        raise UserError(f"cannot map: {exc}") from exc
    print(f"{mapping.name} mapped onto the landing contract in {landing} ({report.seconds:.1f} s)")
    print_mapping_report(report)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        if args.mapping:
            mapping = _mapping(args)
            if not args.input:
                raise MappingError("--mapping needs --input: the export to check")
            with tempfile.TemporaryDirectory(prefix="tessera-check-") as tmp:
                report = run_mapping(mapping, _inputs(args, mapping), Path(tmp) / "landing")
                print(f"{mapping.name}: the export maps ({report.seconds:.1f} s)")
                print_mapping_report(report)
                checked = check_landing(Path(tmp) / "landing")
        else:
            landing = Path(args.landing) if args.landing else load_settings().landing_dir
            if not landing.is_dir():
                raise MappingError(f"{landing}: no landing folder")
            checked = check_landing(landing)
    except MappingError as exc:  # one line on stderr, exit code 2 (tessera/cli.py main)
        raise UserError(str(exc)) from exc
    print(f"landing files against the contract ({checked.landing_dir if not args.mapping else 'as mapped'}):")
    print_check_report(checked)
    return 1 if checked.errors else 0


def add_parser(sub) -> None:
    src = sub.add_parser("sources", help="bring a shop's exports in: source mappings and the preflight check")
    src_sub = src.add_subparsers(dest="sources_command", required=True)
    ls = src_sub.add_parser("list", help="the built-in mappings (config/mappings)")
    ls.set_defaults(func=cmd_list)
    mp = src_sub.add_parser("map", help="map an export onto the landing contract (the landing folder is replaced)")
    mp.add_argument("mapping", help="a built-in mapping's name (tessera sources list) or a mapping file")
    mp.add_argument("input", nargs="+", help="the export: a file or folder, or NAME=PATH per input of the mapping")
    mp.add_argument("--landing", help="landing folder to write (default: TESSERA_LANDING_DIR or data/landing)")
    mp.set_defaults(func=cmd_map)
    ck = src_sub.add_parser(
        "check", help="preflight: the landing files (or an export through its mapping) against the contract"
    )
    ck.add_argument("--mapping", help="check an export through this mapping instead of the landing folder")
    ck.add_argument("--input", nargs="+", default=[], help="the export to check with --mapping")
    ck.add_argument("--landing", help="landing folder to check (default: TESSERA_LANDING_DIR or data/landing)")
    ck.set_defaults(func=cmd_check)
