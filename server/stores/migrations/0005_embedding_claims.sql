-- The embedding workers' second queue: rows embedded with another model
-- than the one in use (after a model change). Without it, the claim's
-- "another model" test read the whole table on every claim: 80 ms at 100k
-- rows, several times per write under steady writes. Rows that share a
-- model share one deduplicated btree entry list, so the index stays small.
CREATE INDEX memories_embedded_model ON memories (embedding_model) WHERE embedding IS NOT NULL;
