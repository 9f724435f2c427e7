"""The identity engine and stable ids, on small hand-made tables with known answers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tessera.identity.cli import resolve_file
from tessera.identity.config import IdentityConfig, load_mapping
from tessera.identity.engine import RECORDS, resolve, standardise
from tessera.identity.stable_ids import assign_stable_ids

FIXTURES = Path(__file__).parent / "fixtures"
ALL = {
    a: [a]
    for a in ("given_name", "surname", "address", "city", "postcode", "birth_date", "phone", "email", "national_id")
}


FIRST = ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "lou", "max", "ned", "olga"]
LAST = ["archer", "baker", "carter", "dyer", "ellis", "fisher", "glover", "hunter", "irving", "jones", "keller"]


def filler(n: int = 300) -> list[dict]:
    """n distinct people, none like another: the background a probabilistic model learns how often
    attributes agree by chance from (a table of a handful of records teaches it nothing)."""
    return [
        {
            "record_id": f"z{i:04d}",
            "given_name": FIRST[i % len(FIRST)],
            "surname": LAST[(i // len(FIRST)) % len(LAST)] + ("" if i < 165 else "son"),
            "birth_date": f"{1940 + i % 60}-{1 + (i * 7) % 12:02d}-{1 + (i * 11) % 28:02d}",
            "postcode": f"PC{i:04d}",
            "city": ["leeds", "york", "hull", "bath", "ely"][i % 5],
            "email": f"person{i}@mail.example",
        }
        for i in range(n)
    ]


def _people(rows: list[dict], order: str = "", background: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection holding `rows` (and, by default, filler people) as table people (every mapped
    column), stored in `order`."""
    con = duckdb.connect()
    df = pd.DataFrame(rows + (filler() if background else []))
    for col in ALL:
        if col not in df:
            df[col] = None
    con.register("people_df", df)
    con.execute(f"create table people as select * from people_df {order}")
    return con


def _resolve(rows: list[dict], **overrides):
    con = _people(rows)
    config = IdentityConfig(record_id="record_id", columns=ALL, u_max_pairs=20000).with_overrides(**overrides)
    result = resolve(con, "people", config)
    return dict(zip(result.assignments["record_id"], result.assignments["cluster_id"], strict=False)), result


@pytest.mark.parametrize(
    "attribute,raw,expected",
    [
        ("given_name", "  Zoë ", "zoe"),
        ("surname", "O'Connor", "oconnor"),
        ("surname", "van der Berg", "vanderberg"),
        ("address", "12, Wattle St.", "12 wattle st"),
        ("postcode", "sw1a 1aa", "SW1A1AA"),
        ("birth_date", "1980-02-14", "1980-02-14"),
        ("birth_date", "19800214", "1980-02-14"),
        ("birth_date", "14/02/1980", "1980-02-14"),
        ("birth_date", "not a date", None),
        ("email", " Ann@Example.COM ", "ann@example.com"),
        ("email", "ann@@example.com", None),
        ("phone", "+44 7700 900123", "700900123"),
        ("phone", "07700-900123", "700900123"),
        ("phone", "12", None),
        ("national_id", "12-345 678", "12345678"),
    ],
)
def test_standardisers(attribute, raw, expected):
    con = duckdb.connect()
    con.execute("create table t (record_id varchar, v varchar)")
    con.execute("insert into t values ('r1', ?)", [raw])
    standardise(con, "t", IdentityConfig(record_id="record_id", columns={attribute: ["v"]}))
    assert con.execute(f"select {attribute} from {RECORDS}").fetchone()[0] == expected


def test_generic_command_on_a_hand_made_person_table(tmp_path):
    # the hand-made records among background people, in the fixture's own column names
    people = pd.concat(
        [
            pd.read_csv(FIXTURES / "people_small.csv", dtype=str),
            pd.DataFrame(filler()).rename(
                columns={"record_id": "rec_id", "city": "suburb", "birth_date": "date_of_birth"}
            )[["rec_id", "given_name", "surname", "suburb", "postcode", "date_of_birth"]],
        ]
    )
    people.to_csv(tmp_path / "people.csv", index=False)
    out = tmp_path / "out.csv"
    stats = resolve_file(tmp_path / "people.csv", FIXTURES / "people_small_mapping.yaml", out)
    got = pd.read_csv(out, dtype=str)
    assert list(got.columns) == ["record_id", "person_id"]
    got = got[~got["record_id"].str.startswith("z")]
    clusters = sorted(sorted(records) for _, records in got.groupby("person_id")["record_id"])
    # a1-a3 share a phone, a2 is a typo variant; b1/b2 fuzzy; c1 is another Sarah Nguyen (other
    # birth date); d1/d2 Tom/Thomas at one address; e1/e2 agree on everything but the national id,
    # which is weighed as evidence, not a veto (one looks like a placeholder): one person.
    assert clusters == [["a1", "a2", "a3"], ["b1", "b2"], ["c1"], ["d1", "d2"], ["e1", "e2"]]
    assert stats["deterministic_links"] >= 1 and stats["fuzzy_links"] >= 2


def test_mapping_with_an_unknown_attribute_is_rejected(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("record_id: id\ncolumns:\n  shoe_size: s\n")
    with pytest.raises(ValueError, match="shoe_size"):
        load_mapping(bad)


def test_duplicate_record_ids_are_a_clear_error():
    with pytest.raises(ValueError, match="must be unique"):
        _resolve([{"record_id": "r1", "surname": "a"}, {"record_id": "r1", "surname": "b"}])


def test_a_chain_of_weak_matches_that_would_join_two_people_is_refused():
    # p1 and p3 are different people who share a surname and a city; p2 holds only those, so with
    # every compared pair linked (match probability 0), connected components would chain
    # p1-p2-p3. Their own comparison is strong evidence against: the link that would join them is refused.
    clusters, result = _resolve(
        [
            {"record_id": "p1", "given_name": "jonathan", "surname": "smithson", "city": "leeds",
             "address": "5 elm road", "postcode": "LS12AB", "birth_date": "1970-03-01", "email": "jon@a.example"},
            {"record_id": "p2", "surname": "smithson", "city": "leeds"},
            {"record_id": "p3", "given_name": "margaret", "surname": "smithson", "city": "leeds",
             "address": "8 oak lane", "postcode": "LS99ZZ", "birth_date": "1990-11-30", "email": "meg@b.example"},
        ],
        match_probability=0.0,
    )  # fmt: skip
    assert clusters["p1"] != clusters["p3"]
    ours = result.edges[result.edges["record_l"].str.startswith("p") & result.edges["record_r"].str.startswith("p")]
    reasons = ours["refused_reason"].dropna()
    assert len(reasons) >= 1 and all(r.startswith("cannot-link: p1 and p3 compare at weight") for r in reasons)


def test_a_typo_in_a_birth_date_or_national_id_is_weighed_not_a_veto():
    # the same person twice, one digit wrong in the birth date and in the national id: the old
    # exact-value veto kept them apart; the graded levels join them
    base = {"given_name": "priya", "surname": "raman", "address": "14 quay street", "postcode": "BS14ST"}
    clusters, result = _resolve(
        [
            {"record_id": "q1", **base, "birth_date": "1984-06-12", "national_id": "AB123456"},
            {"record_id": "q2", **base, "birth_date": "1984-06-13", "national_id": "AB123457"},
        ]
    )
    assert clusters["q1"] == clusters["q2"]
    assert result.edges["accepted"].all()


def test_identifier_shared_by_too_many_records_links_nothing():
    rows = [{"record_id": f"r{i}", "surname": f"name{i}", "phone": "0800 000000"} for i in range(6)]
    clusters, result = _resolve(rows)
    assert len({clusters[f"r{i}"] for i in range(6)}) == 6
    assert not (result.edges["kind"] == "deterministic").any()
    assert result.stats["overshared_identifier_values"]["phone"] == 1


def _ids(previous, assignments):
    return assign_stable_ids(previous, pd.DataFrame(assignments, columns=["record_id", "cluster_id"]))


def test_unchanged_input_keeps_every_id_and_records_no_event():
    first = _ids(pd.DataFrame(columns=["record_id", "customer_id"]), [("a", "a"), ("b", "a"), ("c", "c")])
    assert sorted(first.events["event_type"]) == ["created", "created"]
    again = _ids(first.identity_map, [("a", "a"), ("b", "a"), ("c", "c")])
    assert again.identity_map.equals(first.identity_map)
    assert again.events.empty


def test_a_second_run_that_adds_records_keeps_every_existing_id():
    first = _ids(pd.DataFrame(columns=["record_id", "customer_id"]), [("b", "b"), ("c", "c")])
    old = dict(zip(first.identity_map["record_id"], first.identity_map["customer_id"], strict=False))
    # "a" sorts before "b", so the cluster's smallest record changes: the id must not
    second = _ids(first.identity_map, [("a", "a"), ("b", "a"), ("c", "c"), ("d", "d")])
    new = dict(zip(second.identity_map["record_id"], second.identity_map["customer_id"], strict=False))
    assert all(new[r] == old[r] for r in old)
    assert new["a"] == old["b"] and new["d"] not in old.values()
    assert list(second.events["event_type"]) == ["created"]


def test_merge_keeps_the_larger_id_and_split_gives_a_new_one():
    first = _ids(pd.DataFrame(columns=["record_id", "customer_id"]), [("a", "a"), ("b", "a"), ("c", "c")])
    old = dict(zip(first.identity_map["record_id"], first.identity_map["customer_id"], strict=False))
    merged = _ids(first.identity_map, [("a", "a"), ("b", "a"), ("c", "a")])
    assert set(merged.identity_map["customer_id"]) == {old["a"]}
    event = merged.events.iloc[0]
    assert (event.event_type, event.customer_id, event.other_customer_id) == ("merged", old["a"], old["c"])
    split = _ids(merged.identity_map, [("a", "a"), ("b", "b"), ("c", "a")])
    ids = dict(zip(split.identity_map["record_id"], split.identity_map["customer_id"], strict=False))
    assert ids["a"] == ids["c"] == old["a"] and ids["b"] != old["a"]
    assert list(split.events["event_type"]) == ["split"]


def test_the_model_and_clusters_do_not_depend_on_the_order_the_records_are_stored_in():
    # a parallel build can store the same records in another order; u sampling is seeded and
    # the candidate pairs are a set, so the weights (and every match) stay the same
    names = ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon"]
    rows = [
        {
            "record_id": f"r{i:04d}",
            "given_name": names[i % 10],
            "surname": names[(i * 7) % 10] + "son",
            "postcode": f"P{i % 37}",
            "birth_date": f"19{50 + i % 40}-0{1 + i % 9}-1{i % 10}",
            "city": names[(i * 3) % 10] + "ville",
        }
        for i in range(600)
    ]
    results = []
    for order in ("record_id", "record_id desc"):
        con = _people(rows, f"order by {order}", background=False)
        config = IdentityConfig(record_id="record_id", columns=ALL, u_max_pairs=20000)
        results.append(resolve(con, "people", config))
    pd.testing.assert_frame_equal(results[0].weights, results[1].weights)
    pd.testing.assert_frame_equal(results[0].assignments, results[1].assignments)
    assert results[0].weights["m"].notna().all() and len(results[0].weights) >= 20


def _resolve_declared(rows: list[dict], identifiers: list[tuple], **overrides):
    con = _people(rows)
    con.register("ids_df", pd.DataFrame(identifiers, columns=["record_id", "id_type", "id_value"]))
    con.execute("create table declared as select * from ids_df")
    config = IdentityConfig(record_id="record_id", columns=ALL, u_max_pairs=20000).with_overrides(**overrides)
    result = resolve(con, "people", config, identifiers="declared")
    return dict(zip(result.assignments["record_id"], result.assignments["cluster_id"], strict=False)), result


def test_records_sharing_a_declared_identifier_are_one_person_with_the_id_type_as_evidence():
    # three order profiles of one marketplace buyer: nothing in common but the person id (the
    # Brazilian marketplace's customer_unique_id); a fourth profile of another buyer stays apart
    rows = [
        {"record_id": "o1", "given_name": "ana", "surname": "souza", "city": "santos"},
        {"record_id": "o2", "given_name": "beatriz", "surname": "lima", "city": "recife"},
        {"record_id": "o3", "city": "natal"},
        {"record_id": "o4", "given_name": "ana", "surname": "costa", "city": "belem"},
    ]
    identifiers = [
        ("o1", "person_id", "u-7f3a"),
        ("o2", "person_id", "u-7f3a"),
        ("o3", " Person_ID ", " u-7f3a "),  # compared trimmed, the type in any case
        ("o3", "person_id", "u-7f3a"),  # the same pair delivered twice links once
        ("o4", "person_id", "U-7F3A"),  # values keep their case: another buyer's id
        ("o4", "login_id", ""),  # no value: no identifier
        ("gone", "person_id", "u-7f3a"),  # no such record: links nothing, counted
    ]
    clusters, result = _resolve_declared(rows, identifiers)
    assert clusters["o1"] == clusters["o2"] == clusters["o3"] == "o1"
    assert clusters["o4"] == "o4"
    links = result.edges[result.edges["kind"] == "deterministic"]
    assert sorted(zip(links["record_l"], links["record_r"], links["evidence"], strict=True)) == [
        ("o1", "o2", "person_id"),
        ("o1", "o3", "person_id"),
    ]
    assert links["accepted"].all()
    assert result.stats["declared_identifiers"] == 4  # o1, o2, o3 and o4 once each
    assert result.stats["declared_identifiers_of_unknown_records"] == 1
    assert result.stats["declared_links"] == 2
    assert result.stats["overshared_declared_identifier_values"] == {}


def test_a_declared_identifier_and_a_shared_phone_on_one_pair_name_both_as_evidence():
    rows = [{"record_id": "a", "phone": "07700 900123"}, {"record_id": "b", "phone": "+44 7700 900123"}]
    _, result = _resolve_declared(rows, [("a", "login_id", "ann"), ("b", "login_id", "ann")])
    assert result.edges[["record_l", "record_r", "evidence"]].values.tolist() == [["a", "b", "login_id+phone"]]


def test_a_declared_value_on_more_records_than_the_cap_links_nothing_and_is_reported():
    # a placeholder person id ("0") on 12 profiles, a real one on 10 (the cap): only the real one links
    rows = [{"record_id": f"r{i:02d}", "surname": f"name{i}"} for i in range(22)]
    identifiers = [(f"r{i:02d}", "person_id", "0") for i in range(12)]
    identifiers += [(f"r{i:02d}", "person_id", "buyer-1") for i in range(12, 22)]
    identifiers += [(f"r{i:02d}", "login_id", "shared") for i in range(12, 20)]
    clusters, result = _resolve_declared(rows, identifiers, max_records_per_declared_identifier=10)
    assert len({clusters[f"r{i:02d}"] for i in range(12)}) == 12
    assert {clusters[f"r{i:02d}"] for i in range(12, 22)} == {"r12"}
    assert result.stats["overshared_declared_identifier_values"] == {"person_id": 1}
    assert result.stats["largest_declared_identifier_records"] == 12
    # the cap of declared identifiers is their own: the profile fields' cap (4) does not apply
    assert result.stats["max_cluster_size"] == 10
    _, tighter = _resolve_declared(rows, identifiers, max_records_per_declared_identifier=8)
    assert tighter.stats["overshared_declared_identifier_values"] == {"person_id": 2}
    assert set(tighter.edges["evidence"]) == {"login_id"}


def test_declared_links_go_through_the_conflict_guard_like_any_deterministic_link():
    # a login id shared by two profiles that agree on nothing else (another name, birth date and
    # postcode): the link is refused, kept with its reason, and the two stay apart. With one digit
    # wrong in the birth date and the same name, the shared login id holds.
    rows = [
        {"record_id": "p1", "given_name": "ann", "surname": "archer", "birth_date": "1970-03-01", "postcode": "LS12AB"},
        {"record_id": "p2", "given_name": "zed", "surname": "quill", "birth_date": "1990-11-30", "postcode": "XY99ZZ"},
        {"record_id": "p3", "given_name": "bea", "surname": "cole", "birth_date": "1981-04-07", "postcode": "YO11AA"},
        {"record_id": "p4", "given_name": "bea", "surname": "cole", "birth_date": "1981-04-08", "postcode": "YO11AA"},
    ]
    identifiers = [
        ("p1", "login_id", "js"),
        ("p2", "login_id", "js"),
        ("p3", "login_id", "bc"),
        ("p4", "login_id", "bc"),
    ]
    clusters, result = _resolve_declared(rows, identifiers)
    assert clusters["p1"] != clusters["p2"] and clusters["p3"] == clusters["p4"]
    edges = result.edges.set_index("record_l")
    assert (edges.loc["p1", "evidence"], bool(edges.loc["p1", "accepted"])) == ("login_id", False)
    assert edges.loc["p1", "refused_reason"].startswith("cannot-link: p1 and p2 compare at weight")
    assert bool(edges.loc["p3", "accepted"])
    # the one contradiction inside a linked group (p1, p2) is put down to the attribute most against
    against = result.stats["cannot_links_by_attribute"]
    assert sum(against.values()) == 1 and set(against) <= {"given_name", "surname", "birth_date", "postcode"}
    weights = result.weights.groupby("attribute")["weight"].min()
    assert weights[next(iter(against))] == weights[["given_name", "surname", "birth_date", "postcode"]].min()


def test_the_summary_names_the_attribute_behind_most_refusals():
    from tessera.identity.cli import summary

    stats = {"records": 1000, "clusters": 900, "max_cluster_size": 3, "deterministic_links": 60, "fuzzy_links": 40,
             "refused_links": 30, "candidate_pairs": 5000, "cannot_links_by_attribute": {"national_id": 24, "surname": 6}}  # fmt: skip
    lines = summary(stats)
    assert (
        "contradictions inside linked groups, by the attribute most against: {'national_id': 24, 'surname': 6}" in lines
    )
    assert any(
        line.startswith(
            "warning: 30 of 100 links were refused, and national_id is the strongest evidence against in 24"
        )
        for line in lines
    )
    stats["cannot_links_by_attribute"] = {"national_id": 12, "surname": 10, "birth_date": 8}
    assert any(line.startswith("warning: 30 of 100 links were refused because") for line in summary(stats))


def test_without_declared_identifiers_nothing_changes_and_the_pipeline_mapping_sets_the_cap():
    _, result = _resolve([{"record_id": "a", "surname": "x"}, {"record_id": "b", "surname": "y"}])
    assert (result.stats["declared_identifiers"], result.stats["declared_links"]) == (0, 0)
    mapping = load_mapping(Path(__file__).parent.parent / "config" / "identity_mapping.yaml")
    assert (mapping.max_records_per_declared_identifier, mapping.max_records_per_identifier) == (10, 4)


def _small_people_file(tmp_path: Path) -> Path:
    people = pd.concat(
        [
            pd.read_csv(FIXTURES / "people_small.csv", dtype=str),
            pd.DataFrame(filler()).rename(
                columns={"record_id": "rec_id", "city": "suburb", "birth_date": "date_of_birth"}
            )[["rec_id", "given_name", "surname", "suburb", "postcode", "date_of_birth"]],
        ]
    )
    path = tmp_path / "people.csv"
    people.to_csv(path, index=False)
    return path


def test_the_command_writes_stable_tc_ids_and_keeps_them_on_a_rerun(tmp_path, capsys):
    from tessera.cli import main

    people = _small_people_file(tmp_path)
    mapping = FIXTURES / "people_small_mapping.yaml"
    assert main(["identity", "resolve", str(people), "--config", str(mapping), "--out", str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr()
    assert "records ->" in out.out and "links:" in out.out and "training the model" in out.err
    first = pd.read_csv(tmp_path / "a.csv", dtype=str)
    assert first["person_id"].str.match(r"^tc_[0-9a-f]{16}$").all()
    args = ["identity", "resolve", str(people), "--config", str(mapping), "--out", str(tmp_path / "b.csv")]
    assert main([*args, "--previous", str(tmp_path / "a.csv")]) == 0
    second = pd.read_csv(tmp_path / "b.csv", dtype=str)
    pd.testing.assert_frame_equal(first, second)


def test_the_command_with_a_state_folder_compares_only_new_records_on_the_next_run(tmp_path, capsys):
    from tessera.cli import main

    people = _small_people_file(tmp_path)
    mapping = FIXTURES / "people_small_mapping.yaml"
    state = tmp_path / "state"

    def run(out: str, *extra: str) -> str:
        args = ["identity", "resolve", str(people), "--config", str(mapping), "--out", str(tmp_path / out)]
        assert main([*args, "--state", str(state), *extra]) == 0
        return capsys.readouterr().out

    assert "training: full: no earlier run" in run("a.csv")
    assert sorted(p.name for p in state.iterdir()) == ["fingerprints.parquet", "pairs.parquet", "state.json"]
    # one more record: the same person as an existing one, registering again
    frame = pd.read_csv(people, dtype=str)
    frame = pd.concat([frame, frame.iloc[[0]].assign(rec_id="again")], ignore_index=True)
    frame.to_csv(people, index=False)
    out = run("b.csv", "--previous", str(tmp_path / "a.csv"))
    assert "training: incremental: the model trained on" in out and "pairs of 1 new or changed records" in out
    second = pd.read_csv(tmp_path / "b.csv", dtype=str).set_index("record_id")["person_id"]
    first = pd.read_csv(tmp_path / "a.csv", dtype=str).set_index("record_id")["person_id"]
    assert second["again"] == second[frame["rec_id"].iloc[0]]
    assert (second[first.index] == first).all()
    assert "training: full: retrain requested" in run("c.csv", "--retrain")
    # a damaged state folder is one line naming it, exit 2
    (state / "state.json").write_text("{not json")
    args = ["identity", "resolve", str(people), "--config", str(mapping), "--out", str(tmp_path / "d.csv")]
    assert main([*args, "--state", str(state)]) == 2
    assert "not a matcher state this command wrote" in capsys.readouterr().err


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing_input", "nope.csv: file not found"),
        ("missing_mapping", "nope.yaml: mapping file not found"),
        ("bad_attribute", "columns: unknown attribute(s) ['shoe_size']"),
        ("bad_kind", "other_columns.colour: unknown kind 'colour'"),
        ("bad_threshold", "thresholds: unknown identity threshold(s): ['match_weight']"),
        ("missing_column", "names columns the file lacks: ['nickname']"),
    ],
)
def test_a_missing_file_or_bad_mapping_is_one_line_and_exit_2(tmp_path, capsys, case, expected):
    from tessera.cli import main

    people, mapping = _small_people_file(tmp_path), tmp_path / "m.yml"
    body = {
        "bad_attribute": "record_id: rec_id\ncolumns: {shoe_size: surname}\n",
        "bad_kind": "record_id: rec_id\nother_columns: {colour: colour}\n",
        "bad_threshold": "record_id: rec_id\ncolumns: {surname: surname}\nthresholds: {match_weight: 8}\n",
        "missing_column": "record_id: rec_id\ncolumns: {given_name: nickname}\n",
    }
    mapping.write_text(body.get(case, "record_id: rec_id\ncolumns: {surname: surname}\n"))
    if case == "missing_input":
        people = tmp_path / "nope.csv"
    if case == "missing_mapping":
        mapping = tmp_path / "nope.yaml"
    code = main(["identity", "resolve", str(people), "--config", str(mapping), "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("tessera identity resolve: ") and expected in err[-1]
    assert "Traceback" not in "\n".join(err)


# incremental matching: a run hands its state (model, record fingerprints, scored pairs inside
# linked groups) to the next, which blocks and scores only the pairs of new or changed records

PRIYA = {"given_name": "priya", "surname": "raman", "address": "14 quay street", "postcode": "BS14ST",
         "birth_date": "1984-06-12", "email": "priya@a.example"}  # fmt: skip


def _run(con, config, previous=None, retrain=False):
    result = resolve(con, "people", config, previous=previous, retrain=retrain)
    return dict(zip(result.assignments["record_id"], result.assignments["cluster_id"], strict=False)), result


def test_a_rerun_reuses_the_model_and_scores_and_gives_the_same_clusters():
    config = IdentityConfig(record_id="record_id", columns=ALL, u_max_pairs=20000)
    con = _people([{"record_id": "q1", **PRIYA}, {"record_id": "q2", **PRIYA, "birth_date": "1984-06-13"}])
    first, full = _run(con, config)
    assert full.stats["training"] == "full: no earlier run" and full.state.model is not None
    # the pair inside the one linked group is kept for the next run; pairs between groups are not
    assert full.state.pairs.select("record_l", "record_r").rows() == [("q1", "q2")]
    again, rerun = _run(con, config, previous=full.state)
    assert again == first
    assert rerun.stats["changed_records"] == 0 and rerun.stats["candidate_pairs"] == 0
    assert rerun.stats["reused_pair_scores"] == 1
    assert rerun.stats["training"].startswith("incremental: the model trained on 302 records")
    assert rerun.state.model == full.state.model and rerun.state.prior == full.state.prior


def test_a_new_record_is_compared_with_everyone_but_old_pairs_are_not_scored_again():
    config = IdentityConfig(record_id="record_id", columns=ALL, u_max_pairs=20000)
    con = _people([{"record_id": "q1", **PRIYA}])
    _, full = _run(con, config)
    # the same person registers again, with a slip in her email
    con.execute("insert into people (record_id, given_name, surname, address, postcode, birth_date, email) "
                "values ('q2', 'Priya', 'Raman', '14 Quay Street', 'BS1 4ST', '1984-06-12', 'priya@a.exampel')")  # fmt: skip
    clusters, inc = _run(con, config, previous=full.state)
    assert clusters["q2"] == clusters["q1"]
    assert inc.stats["changed_records"] == 1
    # only pairs touching q2 were blocked: each of them holds q2
    touching = con.execute("select count(*) from __id_pairs where record_l = 'q2' or record_r = 'q2'").fetchall()
    assert inc.stats["candidate_pairs"] == touching[0][0] >= 1
    # and a full run on the same records agrees
    assert _run(con, config)[0] == clusters


def test_a_changed_record_is_scored_again_and_can_leave_its_cluster():
    config = IdentityConfig(record_id="record_id", columns=ALL, u_max_pairs=20000)
    con = _people([{"record_id": "q1", **PRIYA}, {"record_id": "q2", **PRIYA}])
    first, full = _run(con, config)
    assert first["q1"] == first["q2"]
    # q2 was a data-entry mistake, corrected to another person entirely
    con.execute("update people set given_name = 'olaf', surname = 'nygaard', address = '2 fjord way', "
                "postcode = 'ZZ99ZZ', birth_date = '1931-01-30', email = 'olaf@b.example' where record_id = 'q2'")  # fmt: skip
    clusters, inc = _run(con, config, previous=full.state)
    assert inc.stats["changed_records"] == 1 and inc.stats["reused_pair_scores"] == 0
    assert clusters["q1"] != clusters["q2"]


def test_a_changed_mapping_a_grown_table_or_a_request_trains_again():
    config = IdentityConfig(record_id="record_id", columns=ALL, u_max_pairs=20000)
    con = _people([{"record_id": "q1", **PRIYA}])
    _, full = _run(con, config)
    _, other = _run(con, config.with_overrides(max_block_size=50), previous=full.state)
    assert other.stats["training"] == "full: the mapping or the matcher settings changed since the earlier run"
    _, asked = _run(con, config, previous=full.state, retrain=True)
    assert asked.stats["training"] == "full: retrain requested"
    con.execute("insert into people select * replace ('n' || record_id as record_id) from people limit 100")
    _, grown = _run(con, config, previous=full.state)
    assert grown.stats["training"].startswith("full: 401 records against 301 at training: more than 20% changed")


def test_the_pair_budget_drops_the_largest_blocks_first_and_keeps_the_rare_ones():
    from tessera.identity import blocking

    con = duckdb.connect()
    # one key held by 40 records (780 pairs), three held by 2 records (1 pair each)
    rows = [(f"c{i:02d}", "name:smith") for i in range(40)] + [
        (a, key) for a, key in (("r1", "name:zog"), ("r2", "name:zog"), ("r3", "dob:1931"), ("r4", "dob:1931"),
                                ("r5", "email@:zed"), ("r6", "email@:zed"))
    ]  # fmt: skip
    con.execute(f"create temp table {blocking.KEYS} (record_id varchar, key varchar)")
    con.executemany(f"insert into {blocking.KEYS} values (?, ?)", rows)

    def pairs(budget):
        stats = blocking.candidate_pairs(con, max_block_size=200, pair_budget=budget)
        found = con.execute(f"select record_l, record_r from {blocking.PAIRS} order by all").fetchall()
        return stats, found

    stats, found = pairs(None)
    assert stats["candidate_pairs"] == 783 and stats["block_size_cap"] == 200
    stats, found = pairs(100)  # the 40-record block does not fit: it is skipped, and counted
    assert found == [("r1", "r2"), ("r3", "r4"), ("r5", "r6")]
    assert stats["block_size_cap"] == 2 and stats["skipped_blocks_per_key"] == {"name": 1}
    stats, found = pairs(783)
    assert stats["candidate_pairs"] == 783 and stats["block_size_cap"] == 40


def test_deterministic_links_teach_the_model_how_a_persons_records_differ():
    # 120 people registered twice under one email, their addresses always equal, their birth dates
    # equal but in 12 of them (a digit slip): the links are labelled matches for every comparison
    # but the email's, whose m stays EM's (among links, emails always agree: no evidence)
    rows = []
    for i in range(120):
        person = {"given_name": FIRST[i % 15], "surname": LAST[i % 11] + "x", "address": f"{i} mill lane",
                  "birth_date": f"{1950 + i % 40}-0{1 + i % 9}-1{i % 10}", "email": f"dup{i}@mail.example"}  # fmt: skip
        slipped = {**person, "birth_date": person["birth_date"][:-1] + str((i + 1) % 10)} if i % 10 == 0 else person
        rows += [{"record_id": f"d{i:03d}a", **person}, {"record_id": f"d{i:03d}b", **slipped}]
    clusters, result = _resolve(rows)
    assert all(clusters[f"d{i:03d}a"] == clusters[f"d{i:03d}b"] for i in range(120))
    notes = result.stats["training_notes"]
    assert "m of given_name, surname, address, birth_date from 120 deterministic links; the others from EM" in notes
    weights = result.weights.set_index(["attribute", "level"])["m"]
    # 120 links agree on the address, smoothed with 10 pseudo-links at the prior m (0.70)
    assert weights[("address", "Exact match on address")] == pytest.approx((120 + 0.70 * 10) / 130)
    # 108 of 120 birth dates agree exactly, 12 are one edit apart
    assert weights[("birth_date", "Exact match on birth_date")] == pytest.approx((108 + 0.80 * 10) / 130)
    assert weights[("birth_date", "Damerau-Levenshtein distance of birth_date <= 1")] == pytest.approx(
        (12 + 0.08 * 10) / 130
    )
