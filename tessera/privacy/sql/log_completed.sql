-- the journal's requests, every file step done: into the audit log, processed at $processed_at
insert into privacy.erasure_log
select request_id, requested_at, $processed_at, run_id, identifiers, rows_removed
from privacy.erasure_pending_requests
