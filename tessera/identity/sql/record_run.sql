insert into identity.resolution_runs
values ($run_id, $run_at, $records, $clusters, $merge_rate, $max_cluster_size, $deterministic_links, $fuzzy_links,
    $refused_links, $candidate_pairs, $id_changes, $stats)
