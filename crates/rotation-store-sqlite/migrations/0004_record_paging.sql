-- Re-signing pages through an authority's records in (agent_id, id) order:
-- an index in that order lets each page stop after LIMIT rows instead of
-- sorting every remaining record.
CREATE INDEX trust_records_by_authority_agent ON trust_records (authority_id, agent_id, id);
