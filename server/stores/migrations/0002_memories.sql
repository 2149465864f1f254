-- Long-term memory: facts and semantic memories, their embeddings, and the
-- append-only history of every change.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE memories (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    agent_id text NOT NULL DEFAULT '',
    session_id text NOT NULL DEFAULT '',
    kind smallint NOT NULL,            -- 1 semantic, 2 fact (memoryd.v1.MemoryKind)
    key text,                          -- facts only; unique per user
    content text NOT NULL,
    content_hash bytea NOT NULL,       -- sha256 of content: identical content is stored once
    topics text[] NOT NULL DEFAULT '{}',
    metadata jsonb,
    source_message_ids text[] NOT NULL DEFAULT '{}',
    request_id text,                   -- makes a retried create idempotent
    embedding vector(384),             -- NULL until a worker embeds the row
    embedding_model text,
    content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz
);

CREATE UNIQUE INDEX memories_fact_key ON memories (user_id, key) WHERE kind = 2;
CREATE UNIQUE INDEX memories_semantic_content ON memories (user_id, content_hash) WHERE kind = 1;
CREATE UNIQUE INDEX memories_request_id ON memories (user_id, request_id)
    WHERE request_id IS NOT NULL;
-- Listing and exact (per-user) vector scans go through the user's rows.
CREATE INDEX memories_user_recent ON memories (user_id, create_time DESC, id DESC);
-- Approximate vector search for users with many rows (cosine distance, <=>).
CREATE INDEX memories_embedding ON memories USING hnsw (embedding vector_cosine_ops);
CREATE INDEX memories_content_tsv ON memories USING gin (content_tsv);
-- The embedding workers' queue: rows without a vector.
CREATE INDEX memories_unembedded ON memories (create_time) WHERE embedding IS NULL;
CREATE INDEX memories_expiry ON memories (expire_time) WHERE expire_time IS NOT NULL;

CREATE TABLE memory_events (
    id bigserial PRIMARY KEY,
    memory_id uuid NOT NULL,           -- no foreign key: history outlives the memory
    user_id text NOT NULL,
    op smallint NOT NULL,              -- 1 add, 2 update, 3 delete (memoryd.v1.MemoryOp)
    old_content text,
    new_content text,
    reason text NOT NULL DEFAULT '',
    actor text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX memory_events_memory ON memory_events (user_id, memory_id, id);
