-- Paging through an authority's records (`authority_id = ? [AND key_id IN
-- (...)] AND (agent_id, id) > (?, ?) ORDER BY agent_id, id LIMIT ?`, what
-- re-signing does) must be an ordered index range scan. With the old
-- (authority_id, key_id, ...) index and statistics not yet gathered after a
-- bulk insert, the planner sorted every remaining record for each page
-- (30 ms per page of 1,000 at 100k records). Key filters are cheap on top
-- of an index in page order.
DROP INDEX trust_records_by_key;
CREATE INDEX trust_records_by_authority ON trust_records (authority_id, agent_id, id);
