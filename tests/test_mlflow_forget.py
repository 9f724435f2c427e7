"""MLflow after an erasure (issue 33, item 2): earlier runs' id_mappings.json and the registered
model versions' bundles held the erased people's keys and their learned embeddings. ml/forget.py
retires every run, model and version that carries one; nothing under the artifact root may hold
the person's bytes afterwards, and the models trained without them stay loadable."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import mlflow
import mlflow.tracking._tracking_service.utils as tracking_utils
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ml.forget import ACTIONS, ERASURE_TAG, RETIRED, Needles, file_carries, forget, stream_carries
from ml.promotion import GateRule, judge_first_model
from ml.recommender import RecommenderParams, build_data, fit
from ml.registry import CHALLENGER, CHAMPION, champion, decide, register
from ml.tracking import log_recommender_run
from tessera.privacy.pseudonym import DEMO_SALT, pseudonym

MODEL = "tessera-recommender"
ERASED_KEY = "tc_0123456789abcdef"  # customer_key as tessera/identity/stable_ids.py makes them
ERASED_PKEY = pseudonym(DEMO_SALT, ERASED_KEY)
OTHER_KEYS = [f"tc_{n:016x}" for n in range(1, 25)]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A SQLite tracking store and artifact root as tessera.settings lays them out. ml.tracking
    calls mlflow.set_tracking_uri, which also sets MLFLOW_TRACKING_URI: both are put back after
    the test, so later pipeline runs in this process do not log here."""
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    (tmp_path / "mlflow").mkdir()
    return f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}", tmp_path / "mlflow" / "artifacts"


def _train_and_log(uri: str, root: Path, keys: list[str], seed: int):
    """A small recommender trained, logged and registered as ml/rec_run.py does (the same
    bundle, id mappings, nested baseline run and registry calls): customers known by customer_pkey."""
    from ml.rec_lists import model_bundle

    rng = np.random.default_rng(seed)
    pkeys = [pseudonym(DEMO_SALT, k) for k in keys]
    users = pd.DataFrame({"customer_key": pkeys, "gender": rng.choice(["F", "M"], len(pkeys))})
    items = pd.DataFrame({"product_id": [f"p{i:02d}" for i in range(12)], "category": rng.choice(["a", "b"], 12)})
    n = 8 * len(pkeys)
    interactions = pd.DataFrame(
        {
            "customer_key": np.repeat(pkeys, 8),
            "product_id": [f"p{i:02d}" for i in rng.integers(0, 12, n)],
            "interaction_type": rng.choice(["view", "purchase"], n),
            "occurred_at": pd.Timestamp("2026-10-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D"),
        }
    )
    data = build_data(users, items, interactions, ["gender"], ["category"])
    params = RecommenderParams(no_components=4, epochs=2, seed=seed)
    logged = log_recommender_run(
        tracking_uri=uri,
        experiment="tessera-recommender",
        artifact_root=root,
        params={**params.as_dict(), "n_users": len(data.users.ids)},
        metrics={"ndcg_at_10": 0.2},
        bundle=model_bundle(fit(data, data.interactions, params), data, 5),
        tags={"dagster_run_id": f"run-{seed}", "source": "tessera"},
        mappings={"users": data.users.ids, "items": data.items.ids},
        baselines={"most_popular": {"ndcg_at_10": 0.1}},
    )
    return logged, pkeys


def _gate(client: MlflowClient, logged, promote: bool, champion_version: str | None) -> str:
    version = register(client, MODEL, logged.model_uri, logged.run_id)
    users = pd.Series([0.5 if promote else 0.0] * 3, index=pd.RangeIndex(3, name="u"))
    verdict = judge_first_model(users, pd.Series([0.1] * 3, index=users.index), GateRule(min_users=1), "most_popular")
    decide(client, MODEL, version, champion_version, verdict)
    return version


def _members(data: bytes, depth: int = 0) -> list[bytes]:
    """A file's bytes and, for a zip (npz) or gzip file, its members' inflated bytes, nested."""
    out = [data]
    if depth < 3 and data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                out += _members(archive.read(name), depth + 1)
    elif depth < 3 and data[:2] == b"\x1f\x8b":
        out += _members(gzip.decompress(data), depth + 1)
    return out


def _files_holding(root: Path, *values: str) -> list[str]:
    """Every file under `root` whose raw bytes or members hold a value, case-insensitive, as UTF-8
    and as the UTF-16/UTF-32 numpy and pickle store text in (independent of ml/forget.py)."""
    needles = [v.lower().encode(encoding) for v in values for encoding in ("utf-8", "utf-16-le", "utf-32-le")]
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and any(n in blob.lower() for blob in _members(p.read_bytes()) for n in needles)
    )


def test_forget_retires_every_model_and_artifact_carrying_the_person_and_keeps_the_rest(store):
    uri, root = store
    client = MlflowClient(tracking_uri=uri)
    # v1 (with the person) becomes champion; v2 (with the person) is kept as challenger; v3 was
    # trained after the erasure request, without the person, and carries no alias
    first, _ = _train_and_log(uri, root, [ERASED_KEY, *OTHER_KEYS], seed=1)
    v1 = _gate(client, first, promote=True, champion_version=None)
    second, _ = _train_and_log(uri, root, [ERASED_KEY, *OTHER_KEYS], seed=2)
    v2 = _gate(client, second, promote=False, champion_version=v1)
    third, third_pkeys = _train_and_log(uri, root, OTHER_KEYS, seed=3)
    v3 = register(client, MODEL, third.model_uri, third.run_id)
    # an earlier layout's leftovers no run owns: embeddings by internal key in a compressed npz
    # (UTF-32 text inside a deflated member), and a gzipped id list
    legacy = root / "legacy"
    legacy.mkdir()
    np.savez_compressed(
        legacy / "embeddings.npz", ids=np.array([ERASED_KEY.upper(), OTHER_KEYS[0]]), emb=np.ones((2, 3))
    )
    (legacy / "ids.txt.gz").write_bytes(gzip.compress(f"{OTHER_KEYS[1]}\n{ERASED_KEY}\n".encode()))
    (legacy / "others.txt.gz").write_bytes(gzip.compress(f"{OTHER_KEYS[1]}\n".encode()))
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == v1
    assert str(client.get_model_version_by_alias(MODEL, CHALLENGER).version) == v2

    carrying = _files_holding(root, ERASED_KEY, ERASED_PKEY)
    # both runs' id mappings, both bundles, and the two legacy files: the test can fail
    assert len(carrying) == 6 and "legacy/embeddings.npz" in carrying and "legacy/ids.txt.gz" in carrying
    assert sum(p.endswith("id_mappings.json") for p in carrying) == 2
    assert sum(p.endswith("bundle.pkl") for p in carrying) == 2
    model_files = sum(
        len(
            [
                f
                for f in (root / "models" / client.get_model_version(MODEL, v).source.removeprefix("models:/")).rglob(
                    "*"
                )
                if f.is_file()
            ]
        )
        for v in (v1, v2)
    )
    files_before = {p for p in root.rglob("*") if p.is_file()}

    # values nobody carries, and a value too short to search for, change nothing
    nothing = forget([pseudonym(DEMO_SALT, "tc_nobody"), "tc_ffffffffffffffff", "ab12", ""], uri, MODEL, root)
    assert {k: nothing[k] for k in ACTIONS} == dict.fromkeys(ACTIONS, 0)
    assert nothing["values_not_searched"] == 1 and nothing["files_scanned"] == len(files_before)
    assert {p for p in root.rglob("*") if p.is_file()} == files_before

    result = forget([ERASED_KEY, ERASED_PKEY], uri, MODEL, root)
    assert {k: result[k] for k in ACTIONS} == {
        "runs_touched": 2,
        # two id mappings, the two models' every file, the two legacy files
        "artifacts_removed": 2 + model_files + 2,
        "logged_models_retired": 2,
        "model_versions_retired": 2,
        "aliases_removed": 2,
        "champion_retired": 1,
    }
    assert result["store_vacuumed"] == 1 and result["bytes_scanned"] > 0

    # no byte of the person is left under the artifact root; the other customers' legacy file is
    assert _files_holding(root, ERASED_KEY, ERASED_PKEY) == []
    assert (legacy / "others.txt.gz").exists()
    # the retired versions and their aliases are gone: the next pipeline run has no champion and
    # judges its model as a first one (ml/rec_run.py promotion_gate)
    assert [str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")] == [v3]
    assert champion(client, MODEL) is None
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(MODEL, CHALLENGER)
    # the retired runs say so, keep their metrics, and no run's tags hold an identifier
    for logged, version in ((first, v1), (second, v2)):
        run = client.get_run(logged.run_id)
        assert run.data.tags[ERASURE_TAG] == RETIRED
        assert "erasure" in run.data.tags["tessera.erasure_reason"]
        assert run.data.tags["tessera.erasure_model_versions"] == f"{MODEL}/{version}"
        assert run.data.metrics["ndcg_at_10"] == 0.2
        assert not (root / logged.run_id / "artifacts" / "id_mappings.json").exists()
    third_run = client.get_run(third.run_id)
    assert ERASURE_TAG not in third_run.data.tags
    every_run = client.search_runs([third_run.info.experiment_id])
    assert not any(
        v in text.lower()
        for r in every_run
        for text in [*r.data.tags.values(), *r.data.params.values()]
        for v in (ERASED_KEY, ERASED_PKEY)
    )
    assert ERASED_PKEY.encode() not in Path(uri.removeprefix("sqlite:///")).read_bytes()

    # the model trained without the person still loads and ranks its customers
    recommender = mlflow.pyfunc.load_model(f"models:/{MODEL}/{v3}")
    ranked = recommender.predict(pd.DataFrame({"customer_key": [third_pkeys[0], ERASED_PKEY]}))
    assert set(ranked["customer_key"]) == {third_pkeys[0]} and len(ranked) == 5

    # a second call finds nothing
    again = forget([ERASED_KEY, ERASED_PKEY], uri, MODEL, root)
    assert {k: again[k] for k in ACTIONS} == dict.fromkeys(ACTIONS, 0) and again["store_vacuumed"] == 0


def test_forget_on_a_store_never_written_creates_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    result = forget([ERASED_PKEY], uri, MODEL, tmp_path / "mlflow" / "artifacts")
    assert {k: result[k] for k in ACTIONS} == dict.fromkeys(ACTIONS, 0) and result["files_scanned"] == 0
    assert not (tmp_path / "mlflow").exists()


def test_an_interrupted_forget_is_finished_by_the_next_call(store, monkeypatch):
    """The registry is changed before any file is deleted: a call that dies on its first file
    deletion leaves the files that carry the person, and the next call removes them."""
    uri, root = store
    client = MlflowClient(tracking_uri=uri)
    logged, _ = _train_and_log(uri, root, [ERASED_KEY, *OTHER_KEYS], seed=4)
    _gate(client, logged, promote=True, champion_version=None)

    def crash(self, *args, **kwargs):
        raise OSError("killed")

    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", crash)
        with pytest.raises(OSError, match="killed"):
            forget([ERASED_PKEY], uri, MODEL, root)
    assert champion(client, MODEL) is None and client.search_model_versions(f"name = '{MODEL}'") == []
    assert len(_files_holding(root, ERASED_PKEY)) == 2

    finished = forget([ERASED_PKEY], uri, MODEL, root)
    assert finished["logged_models_retired"] == 1 and finished["runs_touched"] == 1
    assert finished["model_versions_retired"] == 0  # already deleted by the interrupted call
    assert _files_holding(root, ERASED_PKEY) == []
    assert {k: v for k, v in forget([ERASED_PKEY], uri, MODEL, root).items() if k in ACTIONS} == dict.fromkeys(
        ACTIONS, 0
    )


@pytest.mark.parametrize(
    ("value", "content", "found"),
    [
        (ERASED_PKEY, b'{"users": ["' + ERASED_PKEY.upper().encode() + b'"]}', True),  # case-insensitive
        (ERASED_PKEY, b"\x8c\x26id:" + ERASED_PKEY.encode() + b"\x94", True),  # a pickled feature name
        (ERASED_PKEY, ERASED_PKEY.encode("utf-32-le"), True),  # a numpy text array
        (ERASED_PKEY, ERASED_PKEY[:-1].encode(), False),
        ("100234", b"[100234, 7]", True),  # a short value as a whole token
        ("100234", b"0.41002345", False),  # ... but not inside a logged number
        ("O-1002", b'"order": "o-1002"', True),
        ("ab12", b"ab12", False),  # too short to search for at all
        ("renée@example.com", "renée@example.com".encode(), True),
        ("renée@example.com", b'"ren\\u00e9e@example.com"', True),  # as json.dumps escapes it
    ],
)
def test_values_are_found_in_bytes_as_they_are_written(value, content, found):
    needles = Needles.of([value])
    assert stream_carries(io.BytesIO(content), needles)[0] is found


def test_a_value_across_two_read_chunks_is_found_and_a_token_at_a_chunk_edge_is_judged_by_its_neighbour():
    long, short = Needles.of([ERASED_PKEY]), Needles.of(["100234"])
    blob = b"x" * 37 + ERASED_PKEY.encode() + b"y" * 50
    assert all(stream_carries(io.BytesIO(blob), long, chunk_bytes=size)[0] for size in (1, 7, 38, 40, 64))
    # "100234" ends a chunk but the next one continues the number: not a token
    assert not any(stream_carries(io.BytesIO(b"a 1002345 b"), short, chunk_bytes=size)[0] for size in (1, 3, 8, 9))
    assert all(stream_carries(io.BytesIO(b"a 100234 b"), short, chunk_bytes=size)[0] for size in (1, 3, 8, 9))
    assert stream_carries(io.BytesIO(b"100234"), short, chunk_bytes=2)[0]


def test_archives_are_scanned_member_by_member_nested(tmp_path):
    needles = Needles.of([ERASED_PKEY])
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ids.txt", ERASED_PKEY)
    outer = tmp_path / "model.zip"
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", "nothing")
        z.writestr("nested.zip", inner.getvalue())
    assert ERASED_PKEY.encode() not in outer.read_bytes()  # only inflated members hold it
    assert file_carries(outer, needles)[0]
    gz = tmp_path / "mappings.json.gz"
    gz.write_bytes(gzip.compress(b'{"users": ["' + ERASED_PKEY.encode() + b'"]}'))
    assert file_carries(gz, needles)[0]
    # a file that claims to be an archive but is not one is refused, not skipped
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    from ml.forget import ForgetError

    with pytest.raises(ForgetError, match="cannot scan artifact"):
        file_carries(broken, needles)
