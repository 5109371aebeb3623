-- A run may carry key material brought by the caller, already wrapped by
-- the custody (imported keys, key provider commands).
ALTER TABLE runs ADD COLUMN staged_custody TEXT;
ALTER TABLE runs ADD COLUMN staged_handle BLOB;
