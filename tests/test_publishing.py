"""Publishing as consumers see it: versioned snapshots, their manifests and exports, retention."""

import json

import duckdb
import pytest

from tessera.publish import snapshots
from tessera.publish.published import PUBLISHED
from tests.conftest import published_fingerprint, run_job, with_pkeys

NAMES = [spec.name for spec in PUBLISHED]


def query(settings, sql):
    con = with_pkeys(duckdb.connect(str(settings.duckdb_path), read_only=True))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_each_manifest_names_its_rows_checks_models_and_files(pipeline):
    _, settings = pipeline
    for spec in PUBLISHED:
        manifest = snapshots.current_snapshot(settings.publish_dir, spec.name).manifest
        rows = query(settings, f"select count(*) from publish.{spec.name}")[0][0]
        # the uplift is empty until a campaign's window has ended (see the uplift test below)
        assert manifest["rows"] == rows and (rows > 0 or spec.name == "campaign_uplift")
        assert {c["name"] for c in manifest["checks"]} == {v.name for v in spec.validations} | {
            f"gx_publish_{spec.name}"
        }
        assert all(c["passed"] for c in manifest["checks"])
        assert manifest["files"][0]["path"] == f"{spec.name}.parquet"
    recs = snapshots.current_snapshot(settings.publish_dir, "customer_recommendations").manifest
    assert recs["models"]["model_version"] == [
        r[0] for r in query(settings, "select distinct model_version from publish.customer_recommendations")
    ]


def test_email_audiences_hold_only_treatment_customers_with_email_consent(pipeline):
    _, settings = pipeline
    snap = snapshots.current_snapshot(settings.publish_dir, "customer_segments")
    audiences = [f for f in snap.manifest["files"] if f.get("export") == "email_audience_rfm"]
    assert {f["value"] for f in audiences} == {
        r[0] for r in query(settings, "select distinct rfm_segment from publish.customer_segments")
    } - {
        # a segment whose every member is in control or without consent has no file
        r[0]
        for r in query(
            settings,
            """select s.rfm_segment from publish.customer_segments s
               join marts.dim_customers c on customer_pkey(c.customer_key) = s.customer_pkey
               group by 1 having count(*) filter (
                   where s.rfm_holdout_group = 'treatment' and c.email_marketing_consent and c.email is not null
               ) = 0""",
        )
    }
    assert all(f["pii"] == ["email", "first_name"] for f in audiences)
    con = with_pkeys(duckdb.connect(str(settings.duckdb_path), read_only=True))
    try:
        files = [str(snap.path / f["path"]) for f in audiences]
        con.execute(f"create temp table sent as select * from read_csv({files}, header = true, all_varchar = true)")
        assert con.execute("select count(*), count(distinct customer_pkey) from sent").fetchall()[0] == (
            (sum(f["rows"] for f in audiences),) * 2
        )
        # nobody in control, nobody without consent; everyone eligible is there
        assert con.execute("select count(*) from sent where holdout_group <> 'treatment'").fetchall() == [(0,)]
        # each file holds its own segment
        assert con.execute(
            "select count(*) from sent join publish.customer_segments s using (customer_pkey) where s.rfm_segment <> sent.segment"
        ).fetchall() == [(0,)]
        expected = con.execute(
            """select count(*) from publish.customer_segments s
               join marts.dim_customers c on customer_pkey(c.customer_key) = s.customer_pkey
               where s.rfm_holdout_group = 'treatment' and c.email_marketing_consent and c.email is not null"""
        ).fetchall()[0][0]
        assert expected > 0
        assert (
            con.execute(
                "select count(*) from sent join marts.dim_customers c on customer_pkey(c.customer_key) = sent.customer_pkey "
                "where c.email_marketing_consent and c.email = sent.email"
            ).fetchall()[0][0]
            == expected
        )
        excluded = con.execute(
            """select count(*) from publish.customer_segments s
               join marts.dim_customers c on customer_pkey(c.customer_key) = s.customer_pkey
               where s.rfm_holdout_group = 'control' or not c.email_marketing_consent"""
        ).fetchall()[0][0]
        assert excluded > 0
    finally:
        con.close()


def test_the_recommendations_feed_has_one_line_per_consenting_customer_in_rank_order(pipeline):
    _, settings = pipeline
    snap = snapshots.current_snapshot(settings.publish_dir, "customer_recommendations")
    lines = [json.loads(line) for line in (snap.path / "exports" / "recommendations.jsonl").read_text().splitlines()]
    # every published customer with web-personalisation consent, once (docs/privacy.md)
    expected_keys = query(
        settings,
        """select distinct r.customer_pkey from publish.customer_recommendations r
           join marts.customer_consents k on customer_pkey(k.customer_key) = r.customer_pkey
           where k.channel = 'web' and k.purpose = 'personalization' and k.granted order by 1""",
    )
    assert [line["customer_pkey"] for line in lines] == [r[0] for r in expected_keys]
    published = query(settings, "select count(distinct customer_pkey) from publish.customer_recommendations")[0][0]
    assert 0 < len(lines) < published  # the demo has customers without that consent
    first = lines[0]
    expected = query(
        settings,
        f"select product_id from publish.customer_recommendations where customer_pkey = '{first['customer_pkey']}' order by rank",
    )
    assert [i["product_id"] for i in first["items"]] == [r[0] for r in expected]
    assert [i["rank"] for i in first["items"]] == list(range(1, len(expected) + 1))
    # every line's items in rank order, 1 to n
    assert all([i["rank"] for i in line["items"]] == list(range(1, len(line["items"]) + 1)) for line in lines)


def test_one_release_names_every_table_of_the_run_and_nothing_is_left_staged(pipeline):
    _, settings = pipeline
    release = snapshots.read_release(settings.publish_dir)
    # and the session index (orchestration/sessions.py), published by the same run
    assert sorted(release["current"]) == sorted([*NAMES, "session_index"])
    runs = {
        json.loads((settings.publish_dir / n / "versions" / v / "manifest.json").read_text())["dagster_run_id"]
        for n, v in release["current"].items()
    }
    assert runs == {release["dagster_run_id"]}  # every table from the run that released them
    assert not (settings.publish_dir / snapshots.STAGING).exists() or not any(
        (settings.publish_dir / snapshots.STAGING).iterdir()
    )
    assert not list(settings.publish_dir.glob("*/current"))  # no per-table pointer to disagree with it
    leftovers = query(
        settings, "select count(*) from information_schema.tables where table_name like '%\\_\\_next' escape '\\'"
    )
    assert leftovers == [(0,)]


def test_republishing_adds_a_version_with_the_same_content_and_prunes_by_retention(warehouse_copy, monkeypatch):
    settings = warehouse_copy
    before = {n: snapshots.current_version(settings.publish_dir, n) for n in NAMES}
    content = published_fingerprint(settings)
    # retention 0 days: every version but the new current one goes
    monkeypatch.setenv("TESSERA_PUBLISH_RETENTION_DAYS", "0")
    import dagster as dg

    assert run_job([dg.AssetKey(["publish", n]) for n in NAMES]).success
    for n in NAMES:
        after = snapshots.current_version(settings.publish_dir, n)
        assert after != before[n] and after > before[n]
        assert snapshots.versions(settings.publish_dir, n) == [after]
    # same inputs, same published bytes: only the version name moved
    assert published_fingerprint(settings) == content


def test_a_negative_retention_is_refused(monkeypatch):
    from tessera.settings import load_settings

    monkeypatch.setenv("TESSERA_PUBLISH_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="TESSERA_PUBLISH_RETENTION_DAYS"):
        load_settings()


def test_campaign_uplift_follows_the_recorded_assignments_into_the_orders(warehouse_copy):
    """The demo's audiences were published on its last day, so no window has ended: pretend the same
    assignments were made 30 days earlier, publish the uplift, and check it against the orders."""
    import dagster as dg

    settings = warehouse_copy
    assert query(settings, "select count(*) from publish.campaign_uplift") == [(0,)]
    (assigned,) = query(settings, "select count(*) from campaigns.assignments")[0]
    assert assigned >= query(settings, "select count(*) from publish.customer_segments")[0][0]
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        con.execute(
            "insert into campaigns.assignments select campaign, customer_key, holdout_group, assigned_on - 30 "
            "from campaigns.assignments"
        )
    finally:
        con.close()
    assert run_job([dg.AssetKey(["publish", "campaign_uplift"])]).success
    uplift = query(
        settings,
        "select campaign, treatment_customers, control_customers, treatment_conversion from publish.campaign_uplift",
    )
    expected = query(
        settings,
        f"""
        with a as (select * from campaigns.assignments where assigned_on = (select min(assigned_on) from campaigns.assignments))
        select a.campaign,
            count(*) filter (where a.holdout_group = 'treatment'),
            count(*) filter (where a.holdout_group = 'control'),
            avg(case when exists (
                select 1 from marts.fct_orders o where o.customer_key = a.customer_key and o.status = 'completed'
                  and o.ordered_at >= a.assigned_on and o.ordered_at < a.assigned_on + interval ({settings.uplift_window_days}) day
            ) then 1.0 else 0.0 end) filter (where a.holdout_group = 'treatment')
        from a group by a.campaign
        having count(*) filter (where a.holdout_group = 'control') >= 2
           and count(*) filter (where a.holdout_group = 'treatment') >= 2
        order by 1
        """,
    )
    assert len(uplift) >= 5
    assert [r[:3] for r in uplift] == [r[:3] for r in expected]
    assert [r[3] for r in uplift] == pytest.approx([r[3] for r in expected])
    snap = snapshots.current_snapshot(settings.publish_dir, "campaign_uplift")
    assert snap.manifest["rows"] == len(uplift)


def test_a_product_list_naming_its_own_product_fails_the_blocking_checks_and_is_not_published(warehouse_copy):
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.keys import PRODUCT_LISTS_KEY, publish_key
    from orchestration.ml import PRODUCT_LIST_CHECKS

    settings = warehouse_copy  # a good run published everything
    good = snapshots.current_version(settings.publish_dir, "product_recommendations")
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        con.execute(
            "update ml.product_recommendations set recommended_product_id = product_id "
            "where rank = 1 and list_name = 'similar' "
            "and product_id = (select min(product_id) from ml.product_recommendations where list_name = 'similar')"
        )
    finally:
        con.close()

    # the asset's own checks, run on the table as it is now
    checks = {dg.AssetCheckKey(PRODUCT_LISTS_KEY, name) for name in PRODUCT_LIST_CHECKS}
    job = defs.resolve_job_def("tessera_all").get_subset(asset_selection=set(), asset_check_selection=checks)
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    verdicts = {e.check_name: (e.passed, e.metadata["violations"].value) for e in result.get_asset_check_evaluations()}
    assert verdicts == {
        "product_lists_never_recommend_the_product_itself": (False, 1),
        "product_lists_recommend_only_active_products": (True, 0),
        "product_lists_recommend_known_products": (True, 0),
        "product_list_ranks_run_from_one_without_gaps": (True, 0),
    }
    graph = defs.resolve_asset_graph()
    assert all(graph.get_check_spec(key).blocking for key in checks)

    # publishing the table as it is: refused by its own validation, the last good version stays
    result = run_job([publish_key("product_recommendations")])
    assert not result.success
    refused = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert refused["product_lists_hold_their_rules"] is False
    assert snapshots.current_version(settings.publish_dir, "product_recommendations") == good
