-- Session memory: the durable transcript.
CREATE TABLE sessions (
    user_id text NOT NULL,
    session_id text NOT NULL,
    agent_id text NOT NULL DEFAULT '',
    message_count bigint NOT NULL DEFAULT 0,
    ttl_ms bigint NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, session_id)
);

-- ListSessions pages by (update_time, session_id) descending within a user.
CREATE INDEX sessions_user_recent ON sessions (user_id, update_time DESC, session_id DESC);
-- DeleteSessionsBefore across users.
CREATE INDEX sessions_update_time ON sessions (update_time);

CREATE TABLE messages (
    user_id text NOT NULL,
    session_id text NOT NULL,
    seq bigint NOT NULL,
    id text NOT NULL,
    role text NOT NULL,
    name text NOT NULL DEFAULT '',
    content text NOT NULL,
    run_id text NOT NULL DEFAULT '',
    metadata jsonb,
    token_count integer NOT NULL,
    create_time timestamptz NOT NULL,
    PRIMARY KEY (user_id, session_id, seq),
    UNIQUE (user_id, session_id, id),
    FOREIGN KEY (user_id, session_id) REFERENCES sessions ON DELETE CASCADE
);
