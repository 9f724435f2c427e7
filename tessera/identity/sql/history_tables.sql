create schema if not exists identity;

create table if not exists identity.identity_merge_history (
    run_id varchar, event_at timestamp, event_type varchar, customer_id varchar,
    other_customer_id varchar, record_count integer, evidence varchar
);

create table if not exists identity.resolution_runs (
    run_id varchar, run_at timestamp, records bigint, clusters bigint, merge_rate double,
    max_cluster_size integer, deterministic_links bigint, fuzzy_links bigint, refused_links bigint,
    candidate_pairs bigint, id_changes bigint, stats varchar
);
