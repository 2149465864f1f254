-- Encryption at rest (server/crypto.py).
--
-- key_id: the id of the key that sealed the row's text contents; NULL means
-- the row is plaintext (written without MEMORYD_ENCRYPTION_KEY). Sealed jsonb
-- values carry their key id themselves.
ALTER TABLE messages ADD COLUMN key_id bigint;
ALTER TABLE memories ADD COLUMN key_id bigint;
ALTER TABLE memory_events ADD COLUMN key_id bigint;

-- The full-text column is written by memoryd from now on: Postgres' own
-- analysis of the plaintext (to_tsvector('english', content), as before)
-- without a key, a blind index of keyed term hashes with one. A generated
-- column would analyse the stored ciphertext, or see the plaintext.
ALTER TABLE memories ALTER COLUMN content_tsv DROP EXPRESSION;

-- Every key that has sealed data here. A process refuses to serve when one
-- of them is missing from its keys: it could not read that data.
CREATE TABLE encryption_keys (
    key_id bigint PRIMARY KEY,
    create_time timestamptz NOT NULL DEFAULT now()
);
