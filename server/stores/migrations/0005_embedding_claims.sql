-- The embedding workers' second queue: rows embedded with another model
-- than the one in use (after a model change). Without it, the claim's
-- "another model" test read the whole table on every claim: 80 ms at 100k
-- rows, several times per write under steady writes. Rows that share a
-- model share one deduplicated btree entry list, so the index stays small.
-- IF NOT EXISTS: on a large table an operator may build it beforehand with
-- CREATE INDEX CONCURRENTLY, which this transaction cannot do, and which
-- does not block writes.
CREATE INDEX IF NOT EXISTS memories_embedded_model ON memories (embedding_model) WHERE embedding IS NOT NULL;
