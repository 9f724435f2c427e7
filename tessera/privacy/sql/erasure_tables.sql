create schema if not exists privacy;

create table if not exists privacy.erased_identifiers (request_id varchar, kind varchar, value_hash varchar);

create table if not exists privacy.erasure_log (
    request_id varchar, requested_at timestamp, processed_at timestamp, run_id varchar, identifiers varchar,
    rows_removed varchar
);

-- the journal: requests whose rows are gone from the warehouse but whose files (published
-- versions, previews, MLflow) may still hold them; the values live here, and only here, until
-- every file step has finished, then the log entry is written and they go in one transaction
create table if not exists privacy.erasure_pending_requests (
    request_id varchar, requested_at timestamp, run_id varchar, identifiers varchar, rows_removed varchar
);

create table if not exists privacy.erasure_pending (request_id varchar, kind varchar, value varchar);

-- work owed after an erasure, e.g. compacting the warehouse file (its free pages hold the bytes)
create table if not exists privacy.maintenance (task varchar, requested_at timestamp);
