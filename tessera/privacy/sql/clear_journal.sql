delete from privacy.erasure_pending_requests;
delete from privacy.erasure_pending;
