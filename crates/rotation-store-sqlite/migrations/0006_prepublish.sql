-- Authorities may publish their next signing key ahead of use (JWKS).
ALTER TABLE authorities ADD COLUMN prepublish_hours INTEGER NOT NULL DEFAULT 0;
