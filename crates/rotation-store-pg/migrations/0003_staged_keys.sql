-- A run may carry key material brought by the caller, already wrapped by
-- the custody. Mirrors the SQLite store's migration 0003.
ALTER TABLE runs ADD COLUMN staged_custody TEXT;
ALTER TABLE runs ADD COLUMN staged_handle BYTEA;
