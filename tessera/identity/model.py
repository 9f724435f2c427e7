"""The probabilistic model: Splink 5 (on DuckDB, or on Spark) scores tessera's candidate pairs.

tessera keeps what Splink lacks (standardisation, deterministic links, capped blocking keys,
clustering that resists over-merging, stable ids); Splink brings the field's Fellegi-Sunter
machinery: graded comparison levels per kind of attribute, term-frequency adjustments, u from
random pairs, m by expectation maximisation.

- Comparison levels by kind (`COMPARISONS`): a typo is a level with its own weight, never a veto.
- Training: u from a seeded sample of random pairs; m by expectation maximisation in two sessions
  blocked on different attributes (names, then a date or an identifier), each training the
  attributes it is not blocked on; every level starts from a prior m, so a level the data never
  shows keeps a sensible value instead of failing. A session that cannot train is reported in
  `training_notes`, and the priors stand for what it would have trained.
- Labelled m: where the shop's identifiers link enough records deterministically (a shared email,
  phone, loyalty card or declared person id), those links are labelled matches, and the m of
  every comparison they do not rest on (names, birth date, address, postcode, ...) is estimated
  from them, smoothed towards the prior m. EM alone, blocked on common names in a large table,
  can take "lives nearby" for a match; the links say how a person's records really differ. The
  identifiers' own comparisons keep EM's m (the links are biased on them).
- Scoring: Splink scores exactly the candidate pairs tessera blocked (`register_blocked_pairs_for_predict`).
- The prior (the probability that two random records match) is estimated from the scores
  themselves: the expected number of matching pairs among the candidates, iterated to a fixed
  point. The match probability is then calibrated to the data, and 0.5 is the Bayes decision.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl

from tessera.identity.dialects import DUCKDB, JARO_WINKLER_SPARK, quote, reformat_iso_date, runner

log = logging.getLogger(__name__)

SCORED = "__id_scored"
# The prior the model is scored with; the estimated one replaces it afterwards.
_PRIOR = 1e-4
# An EM session needs pairs to learn from: below this many its prior m values stand.
MIN_EM_PAIRS = 100
# the u sample grows with the table up to the config's u_max_pairs (config.py says why)
U_MIN_PAIRS = 100_000
U_PAIRS_PER_RECORD = 100
_UNSEEN_M = 1e-200
# the name Splink gives the one input table of a dedupe linker (source_dataset of labelled pairs)
_INPUT_ALIAS = "__splink__input_table_0"
# Deterministic links needed before a comparison's m is taken from them, and the weight of the prior
# m in the smoothing (as that many pseudo-links spread over the levels by the prior).
MIN_LABELLED_PAIRS = 100
PRIOR_PSEUDO_PAIRS = 10.0


@dataclass(frozen=True)
class Compared:
    """A standardised column of the records table and how it is compared."""

    column: str
    kind: str  # person_name, name, text, category, code, email, date
    label: str  # the attribute or input column name shown to users
    swap_with: str | None = None  # the other name column (given name <-> surname swaps)


def _edits_level(c: Compared, k: int, d: str = DUCKDB):
    """Damerau-Levenshtein distance at most k (edits and adjacent transpositions), computed only
    where it can hold: DuckDB's damerau_levenshtein is about 6 times dearer than levenshtein and 80
    times dearer than Jaro-Winkler, and most candidate pairs are far apart. A transposition is two
    Levenshtein edits, so a pair within k of the one is within 2k of the other."""
    import splink.comparison_level_library as cll

    left, right = quote(f"{c.column}_l", d), quote(f"{c.column}_r", d)
    sql = (
        f"(case when abs(length({left}) - length({right})) > {k} then false "
        f"when levenshtein({left}, {right}) > {2 * k} then false "
        f"else damerau_levenshtein({left}, {right}) <= {k} end)"
    )
    return cll.CustomLevel(sql, label_for_charts=f"Damerau-Levenshtein distance of {c.label} <= {k}")


def _jaro_winkler_level(column: str, threshold: float, d: str = DUCKDB):
    """Jaro-Winkler similarity at least `threshold`: Splink's level on DuckDB; on Spark the same
    condition and label on tessera's SQL function, which scores as DuckDB does (dialects.py)."""
    import splink.comparison_level_library as cll

    level = cll.JaroWinklerLevel(column, threshold)
    if d == DUCKDB:
        return level
    left, right = quote(f"{column}_l", d), quote(f"{column}_r", d)
    return cll.CustomLevel(
        f"{JARO_WINKLER_SPARK}({left}, {right}) >= {threshold}", label_for_charts=level.create_label_for_charts()
    )


def _levels(c: Compared, d: str = DUCKDB) -> tuple[list, list[float]]:
    """Splink comparison levels (null level first) and the prior m of each non-null level. The
    custom levels are written in dialect `d` (Splink's own levels render themselves for the
    backend): the same conditions, with the engine's quotes and date format."""
    import splink.comparison_level_library as cll

    col = c.column

    def q(side: str, column: str = col) -> str:
        return quote(f"{column}_{side}", d)

    null = cll.NullLevel(col)
    if c.kind in ("person_name", "name"):
        levels = [null, cll.ExactMatchLevel(col).configure(tf_adjustment_column=col)]
        prior = [0.80]
        if c.swap_with:
            levels.append(
                cll.CustomLevel(
                    f"{q('l')} = {q('r', c.swap_with)} or {q('r')} = {q('l', c.swap_with)}",
                    label_for_charts=f"{c.label} equals the other side's {c.swap_with}",
                )
            )
            prior.append(0.03)
        for threshold, m in ((0.92, 0.08), (0.88, 0.03), (0.7, 0.03)):
            levels.append(_jaro_winkler_level(col, threshold, d))
            prior.append(m)
        return [*levels, cll.ElseLevel()], [*prior, 0.03]
    if c.kind == "date":
        swap = f"{reformat_iso_date(q('l'), d)} = {q('r')} and substr({q('l')}, 6, 2) <> substr({q('l')}, 9, 2)"
        levels = [
            null,
            cll.ExactMatchLevel(col),
            _edits_level(c, 1, d),
            cll.CustomLevel(swap, label_for_charts=f"{c.label} day and month swapped"),
            cll.AbsoluteDateDifferenceLevel(col, input_is_string=True, threshold=1, metric="month"),
            cll.AbsoluteDateDifferenceLevel(col, input_is_string=True, threshold=1, metric="year"),
            cll.AbsoluteDateDifferenceLevel(col, input_is_string=True, threshold=10, metric="year"),
            cll.ElseLevel(),
        ]
        return levels, [0.80, 0.08, 0.02, 0.03, 0.03, 0.02, 0.02]
    if c.kind == "code":
        levels = [
            null,
            cll.ExactMatchLevel(col).configure(tf_adjustment_column=col),
            _edits_level(c, 1, d),
            _edits_level(c, 2, d),
            cll.ElseLevel(),
        ]
        return levels, [0.85, 0.08, 0.03, 0.04]
    if c.kind == "email":
        local = f"nullif(split_part({q('l')}, '@', 1), '') = nullif(split_part({q('r')}, '@', 1), '')"
        levels = [
            null,
            cll.ExactMatchLevel(col).configure(tf_adjustment_column=col),
            cll.CustomLevel(local, label_for_charts=f"{c.label} same local part"),
            # a slip or two in an address; the edit distance is computed only where the lengths
            # allow (_edits_level): on strings this long it is the dearest level of all (a Jaro-
            # Winkler >= 0.95 level instead cost demo F1 0.998 -> 0.994 at 10k records)
            _edits_level(c, 2, d),
            _jaro_winkler_level(col, 0.88, d),
            cll.ElseLevel(),
        ]
        return levels, [0.80, 0.06, 0.06, 0.03, 0.05]
    if c.kind == "text":
        levels = [null, cll.ExactMatchLevel(col)]
        for threshold in (0.95, 0.88, 0.7):
            levels.append(_jaro_winkler_level(col, threshold, d))
        return [*levels, cll.ElseLevel()], [0.70, 0.12, 0.08, 0.05, 0.05]
    if c.kind == "category":
        levels = [
            null,
            cll.ExactMatchLevel(col).configure(tf_adjustment_column=col),
            _jaro_winkler_level(col, 0.9, d),
            cll.ElseLevel(),
        ]
        return levels, [0.85, 0.07, 0.08]
    raise ValueError(f"unknown kind {c.kind!r} for {c.label}")


# The u a level keeps when random sampling never observes it (a small table, a rare agreement):
# agreement is then rare by chance, and disagreement the rule. Without it Splink leaves the level
# untrained, and a table without duplicates weighed every disagreement as no evidence at all.
_UNSEEN_U_AGREE = 1e-4
_UNSEEN_U_ELSE = 0.99


def _comparison(c: Compared, d: str = DUCKDB):
    import splink.comparison_library as cl

    levels, prior = _levels(c, d)
    last = len(levels) - 1  # every comparison ends with its else level
    for i, (level, m) in enumerate(zip(levels[1:], prior, strict=True), start=1):
        level.configure(m_probability=m, u_probability=_UNSEEN_U_ELSE if i == last else _UNSEEN_U_AGREE)
    return cl.CustomComparison(levels, output_column_name=c.column, comparison_description=c.label)


def _em_rules(compared: list[Compared]) -> list[list[str]]:
    """Blocking rules of the EM sessions, so that every attribute is trained in a session not
    blocked on it: the names, then a date or an identifier. (In a large table most pairs sharing a
    common name are different people, and EM can then learn a wrong match class: the plausibility
    check after training catches it.)"""
    names = [c.column for c in compared if c.kind in ("person_name", "name")][:2]
    others = [c.column for c in compared if c.column not in names]
    second = next((c.column for kind in ("date", "email", "code", "text") for c in compared if c.kind == kind), None)
    rules = []
    if names and others:
        rules.append(names)
    if second and second not in names:
        rules.append([second])
    elif len(names) == 2:
        rules.append(names[1:])
    return rules


def _logit2(p: float) -> float:
    return math.log2(p / (1 - p))


class Fitted:
    """A trained Splink model over the records table, able to score any table of pairs."""

    def __init__(
        self,
        con,
        records: str,
        compared: list[Compared],
        record_count: int,
        config,
        trained: dict | None = None,
        links: pl.DataFrame | None = None,
    ):
        """Train on `records`; or, given `trained` (a model as `model_json()` returned it, from an
        earlier run on the same mapping), take its parameters as they are: no training. `links`,
        optional (record_l, record_r, evidence: the identifiers that linked them joined with
        '+'), are deterministic links, used as labelled matches to estimate m. con: a DuckDB
        connection or a runner (dialects.py): Splink runs on its engine."""
        from splink import Linker, SettingsCreator

        self.db = runner(con)
        self.dialect = self.db.dialect
        self.records = records
        self.compared = compared
        self._db = self.db.splink_api()
        self.notes: list[str] = []
        self.all_pairs = record_count * (record_count - 1) / 2
        self.prior = _PRIOR
        self.expected_matches = 0.0
        labels = {c.column: c.label for c in compared}
        if trained is not None:
            with _quiet_splink():
                self.linker = Linker(self._db.register(records), trained, log_level=None)
            self.parameters = _parameters(trained, labels)
            return
        settings = SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name="record_id",
            probability_two_random_records_match=_PRIOR,
            comparisons=[_comparison(c, self.dialect) for c in compared],
            blocking_rules_to_generate_predictions=[],
            retain_matching_columns=False,
            retain_intermediate_calculation_columns=False,
            em_convergence=0.001,
        )
        with _quiet_splink():
            self.linker = Linker(self._db.register(records), settings, log_level=None)
            self.linker.training.estimate_u_using_random_sampling(
                max_pairs=max(1.0, min(float(config.u_max_pairs), _u_pairs(record_count), self.all_pairs)),
                seed=int(config.seed),
                # one pass over the sample: the chunked early stop re-reads it dozens of times when a
                # level is rare (8 of 11 s at 2,000 records)
                num_chunks=1,
                min_count_per_level=None,
            )
            for rule in _em_rules(compared):
                self._train_m(records, rule, config)
            if links is not None:
                self._m_from_links(records, compared, links)
        self._keep_plausible_m(records, compared)
        # Splink's sums run in parallel, so m can differ in its last bits from run to run; rounded,
        # a rerun scores every pair the same
        self.linker = Linker(self._db.register(records), _rounded(self.model_json()), log_level=None)
        self.parameters = _parameters(self.model_json(), labels)

    def model_json(self) -> dict:
        """The trained model (Splink's settings with every m and u): kept between runs, it scores
        the next run's new records without training again."""
        return self.linker.misc.save_model_to_json()

    def _m_from_links(self, records: str, compared: list[Compared], links: pl.DataFrame) -> None:
        """The m of every comparison the links do not rest on, from the links taken as matches and
        smoothed towards its prior m. A comparison of an identifier that links (an email, a phone)
        keeps EM's m: the links are biased on it (two records whose emails agree are linked by
        email, so among the other links the emails always disagree)."""
        from splink import Linker

        if links.height < MIN_LABELLED_PAIRS:
            return
        linking = set(links["evidence"].str.split("+").explode().unique().to_list())
        model_json = self.model_json()
        counted = self._label_m(records, links)
        # per comparison, the links whose two records both hold a value (Splink's m leave out the rest)
        self.db.register("__id_links", links.select("record_l", "record_r"))
        held = [
            f"sum(case when a.{quote(c.column, self.dialect)} is not null "
            f"and b.{quote(c.column, self.dialect)} is not null then 1 else 0 end)"
            for c in compared
        ]
        both = self.db.rows(
            f"select {', '.join(held)} from __id_links as k join {records} as a on a.record_id = k.record_l "
            f"join {records} as b on b.record_id = k.record_r"
        )[0]
        self.db.unregister("__id_links")
        present = {c.column: int(count or 0) for c, count in zip(compared, both, strict=True)}
        used = []
        for comparison in model_json["comparisons"]:
            c = next(x for x in compared if x.column == comparison["output_column_name"])
            n = float(present[c.column])
            if c.column in linking or not n:
                continue
            _, prior = _levels(c, self.dialect)
            levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
            for level, m_prior, m_seen in zip(levels, prior, counted[c.column], strict=True):
                level["m_probability"] = ((m_seen or 0.0) * n + m_prior * PRIOR_PSEUDO_PAIRS) / (n + PRIOR_PSEUDO_PAIRS)
            used.append(c.label)
        if used:
            self.linker = Linker(self._db.register(records), model_json, log_level=None)
            self.notes.append(f"m of {', '.join(used)} from {links.height} deterministic links; the others from EM")

    def _label_m(self, records: str, labels: pl.DataFrame) -> dict[str, list[float | None]]:
        """The share of `labels` (taken as matches) at each level of every comparison, None where
        no label falls; the model itself is left as it was."""
        from splink import Linker

        before = self.model_json()
        # Splink leaves a level no label falls in at its current m: a sentinel tells those apart
        marked = json.loads(json.dumps(before))
        for comparison in marked["comparisons"]:
            for level in comparison["comparison_levels"]:
                if not level.get("is_null_level"):
                    level["m_probability"] = _UNSEEN_M
        table = "__id_labelled_pairs"
        self.db.register(
            table,
            labels.select(
                source_dataset_l=pl.lit(_INPUT_ALIAS),
                record_id_l="record_l",
                source_dataset_r=pl.lit(_INPUT_ALIAS),
                record_id_r="record_r",
            ),
        )
        try:
            with _quiet_splink():
                self.linker = Linker(self._db.register(records), marked, log_level=None)
                self.linker.training.estimate_m_from_pairwise_labels(table)
            out = {
                comparison["output_column_name"]: [
                    None if lvl.get("m_probability") == _UNSEEN_M else lvl.get("m_probability")
                    for lvl in comparison["comparison_levels"]
                    if not lvl.get("is_null_level")
                ]
                for comparison in self.model_json()["comparisons"]
            }
        finally:
            self.db.unregister(table)
            self.linker = Linker(self._db.register(records), before, log_level=None)
        return out

    def _keep_plausible_m(self, records: str, compared: list[Compared]) -> None:
        """EM can settle on a wrong match class: blocked on common names in a large table, it took
        "lives nearby" for a match and learned that a match's birth date agrees 6 % of the time.
        Records of one person agree on an attribute more often than they disagree completely, so a
        comparison whose trained m puts less on exact agreement than on the last level goes back to
        its prior m, and the note says so."""
        from splink import Linker

        model_json = self.linker.misc.save_model_to_json()
        by_column = {c.column: c for c in compared}
        changed = False
        for comparison in model_json["comparisons"]:
            levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
            exact, other = levels[0].get("m_probability") or 0.0, levels[-1].get("m_probability") or 0.0
            if exact >= other:
                continue
            c = by_column[comparison["output_column_name"]]
            _, prior = _levels(c, self.dialect)
            for level, m in zip(levels, prior, strict=True):
                level["m_probability"] = m
            self.notes.append(
                f"EM's m for {c.label} was implausible (exact agreement {exact:.3f} < complete disagreement "
                f"{other:.3f}): prior m kept"
            )
            changed = True
        if changed:
            self.linker = Linker(self._db.register(records), model_json, log_level=None)

    def _train_m(self, records: str, rule: list[str], config) -> None:
        """One EM session blocked on `rule`. A session with too few pairs to learn from is skipped,
        and a session that fails leaves the model as it was before it (Splink drops the blocked
        comparisons from the model while a session runs): both are reported in `notes`."""
        from splink import Linker, block_on

        cols = [quote(c, self.dialect) for c in rule]
        pairs = self.db.rows(
            f"select coalesce(sum(n * (n - 1) / 2), 0) from (select count(*) as n from {records} "
            f"where {' and '.join(f'{c} is not null' for c in cols)} group by {', '.join(cols)})"
        )[0][0]
        name = "+".join(rule)
        if pairs < MIN_EM_PAIRS:
            self.notes.append(f"EM blocked on {name}: {int(pairs)} pairs, fewer than {MIN_EM_PAIRS}; prior m kept")
            return
        before = self.linker.misc.save_model_to_json()
        try:
            self.linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*rule), estimate_without_term_frequencies=True, max_pairs=float(config.em_max_pairs)
            )
        except Exception as exc:
            note = (
                f"EM blocked on {name} could not train ({type(exc).__name__}: {str(exc).splitlines()[0]}); prior m kept"
            )
            log.warning(note)
            self.notes.append(note)
            self.linker = Linker(self._db.register(records), before, log_level=None)

    def score(self, pairs: str, out: str, append: bool = False) -> None:
        """Score the pairs in `pairs` (record_l, record_r) into `out` (record_l, record_r, bf):
        bf is the pair's log2 Bayes factor, the prior excluded."""
        self.db.create(
            "__id_blocked_pairs",
            f"select '0' as match_key, record_l as join_key_l, record_r as join_key_r from {pairs}",
        )
        with _quiet_splink():
            self.linker.table_management.register_blocked_pairs_for_predict(self._db.register("__id_blocked_pairs"))
            # every level has a prior m, so nothing is untrained: no warning to print
            predicted = self.linker.inference.predict(warning_mode="never")
        select = (
            f"select least(record_id_l, record_id_r) as record_l, greatest(record_id_l, record_id_r) as record_r, "
            f"match_weight - ({_logit2(_PRIOR)!r}) as bf from {predicted.physical_name}"
        )
        if append:
            self.db.append(out, select)
        else:
            self.db.create(out, select)
        predicted.drop_table_from_database_and_remove_from_cache()

    def strongest_against(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """For each pair of `pairs` (record_l, record_r), the compared attribute whose level is the
        strongest evidence against a match, and that level's weight (log2 Bayes factor): which
        attribute made a cannot-link. Pairs with no evidence against are left out."""
        from splink import Linker

        out_schema = {"record_l": pl.String, "record_r": pl.String, "attribute": pl.String, "weight": pl.Float64}
        if pairs.is_empty():
            return pl.DataFrame(schema=out_schema)
        explained = self.model_json()
        explained["retain_intermediate_calculation_columns"] = True
        self.db.register("__id_explain_pairs", pairs.select("record_l", "record_r"))
        self.db.create(
            "__id_blocked_pairs",
            "select '0' as match_key, record_l as join_key_l, record_r as join_key_r from __id_explain_pairs",
        )
        self.db.unregister("__id_explain_pairs")
        with _quiet_splink():
            linker = Linker(self._db.register(self.records), explained, log_level=None)
            linker.table_management.register_blocked_pairs_for_predict(self._db.register("__id_blocked_pairs"))
            predicted = linker.inference.predict(warning_mode="never")
        columns = {c.column: c.label for c in self.compared}
        weights = ", ".join(f"cast({quote('mw_' + col, self.dialect)} as double)" for col in columns)
        frame = self.db.frame(
            f"select least(record_id_l, record_id_r) as record_l, greatest(record_id_l, record_id_r) as record_r, "
            f"{'list_value' if self.dialect == DUCKDB else 'array'}({weights}) as weights from {predicted.physical_name}"
        )
        predicted.drop_table_from_database_and_remove_from_cache()
        labels = list(columns.values())
        return (
            frame.with_columns(
                worst=pl.col("weights").list.arg_min(), weight=pl.col("weights").list.min().cast(pl.Float64)
            )
            .filter(pl.col("weight") < 0)
            .select(
                "record_l",
                "record_r",
                attribute=pl.col("worst").replace_strict(dict(enumerate(labels)), return_dtype=pl.String),
                weight="weight",
            )
            .sort("record_l", "record_r")
        )


@contextmanager
def _quiet_splink():
    """Splink logs every untrained level and sampling detail at WARNING/INFO; the facts that
    matter are in the model's parameters and training notes."""
    logger = logging.getLogger("splink")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def fit_and_score(
    con,
    records: str,
    pairs: str,
    compared: list[Compared],
    record_count: int,
    config,
    links: pl.DataFrame | None = None,
) -> Fitted:
    """Train on `records` (record_id plus the compared columns) and the deterministic `links`,
    score the candidate pairs in `pairs` into the temp table SCORED (record_l, record_r, bf), and
    estimate the prior from them. con: a DuckDB connection or a runner (dialects.py)."""
    fitted = Fitted(con, records, compared, record_count, config, links=links)
    fitted.score(pairs, SCORED)
    fitted.prior, fitted.expected_matches = estimate_prior(fitted.db, fitted.all_pairs)
    return fitted


def _u_pairs(records: int) -> float:
    """Random pairs to estimate u from: U_PAIRS_PER_RECORD per record, at least U_MIN_PAIRS (the
    caller caps it at u_max_pairs and at all pairs)."""
    return float(max(U_MIN_PAIRS, U_PAIRS_PER_RECORD * records))


def _round(x: float, digits: int = 12) -> float:
    """x to `digits` significant digits."""
    return float(f"{x:.{digits - 1}e}") if x else x


def _rounded(model_json: dict) -> dict:
    """The model with every m and u rounded to 12 significant digits."""
    out = json.loads(json.dumps(model_json))
    for comparison in out["comparisons"]:
        for level in comparison["comparison_levels"]:
            for key in ("m_probability", "u_probability"):
                if level.get(key) is not None:
                    level[key] = _round(level[key])
    return out


def match_probability(bf: str, prior: float) -> str:
    """SQL of the posterior match probability of a pair with log2 Bayes factor `bf`."""
    return f"1 / (1 + pow(2, -({bf} + ({_logit2(prior)!r}))))"


def estimate_prior(con, all_pairs: float, iterations: int = 50) -> tuple[float, float]:
    """The probability that two random records match: the fixed point of prior = expected matching
    pairs / all pairs, where the expected matching pairs are the summed match probabilities of the
    candidate pairs that the prior makes more likely matches than not. Counting only those keeps
    the millions of weak candidate pairs of a large table, each a little likely, from inflating the
    prior (summing every pair ran away to 443,000 expected matches for 13,000 true ones at 100,000
    records); iterating up from a tiny prior finds the smallest fixed point. Pairs outside the
    candidates are taken as non-matches. Returns (prior, expected)."""
    db = runner(con)
    if all_pairs < 1:
        return 0.5, 0.0
    prior = min(0.5, 1.0 / all_pairs)
    expected = 0.0
    for _ in range(iterations):
        expected = db.rows(
            f"select coalesce(sum(p), 0) from (select 1 / (1 + pow(2, -(bf + ?))) as p from {SCORED}) where p >= 0.5",
            [_logit2(prior)],
        )[0][0]
        new = min(0.5, max(expected, 1.0) / all_pairs)
        if abs(new - prior) <= 1e-4 * prior:
            prior = new
            break
        prior = new
    # the sum runs in parallel: rounded, the prior is the same on every run
    return _round(prior), round(float(expected), 6)


def _parameters(model: dict, labels: dict[str, str]) -> pl.DataFrame:
    rows = []
    for comparison in model.get("comparisons", []):
        name = labels.get(comparison["output_column_name"], comparison["output_column_name"])
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append({"attribute": name, "level": level.get("label_for_charts"), "m": m, "u": u, "weight": weight})
    schema = {"attribute": pl.String, "level": pl.String, "m": pl.Float64, "u": pl.Float64, "weight": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
