-- Nothing lost: for every source, landing records = loaded + quarantined at load, and loaded =
-- passed on + quarantined in staging. Any row returned names a source that does not add up.
select *
from {{ ref('source_reconciliation') }}
where not reconciles
