-- Memory extraction: jobs that turn transcripts into memories, and how far
-- each session has been extracted.

-- The last seq of each session whose messages extraction has read: a job reads
-- seq > extracted_seq only, so no message is extracted twice. Advanced in the
-- same transaction that writes the job's memories.
ALTER TABLE sessions ADD COLUMN extracted_seq bigint NOT NULL DEFAULT 0;
-- The idle-extraction cron looks for sessions with unextracted messages.
CREATE INDEX sessions_unextracted ON sessions (update_time) WHERE message_count > extracted_seq;

CREATE TABLE extraction_jobs (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    session_id text,                   -- NULL: the job extracts its own `messages`
    state smallint NOT NULL,           -- 1 queued, 2 running, 3 succeeded, 4 failed (JobState)
    error text NOT NULL DEFAULT '',
    trigger text NOT NULL,             -- api, messages (after N appends), idle
    extractor text NOT NULL DEFAULT '',
    messages jsonb,                    -- ExtractMemories(messages[]); cleared when the job ends
    first_seq bigint,                  -- the seq range a session job read, set when it runs
    last_seq bigint,
    message_count integer NOT NULL DEFAULT 0,
    created_count integer NOT NULL DEFAULT 0,
    updated_count integer NOT NULL DEFAULT 0,
    deleted_count integer NOT NULL DEFAULT 0,
    noop_count integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);

-- At most one queued job per session: a second ExtractMemories while one is
-- queued gets that job back (it will read the new messages too).
CREATE UNIQUE INDEX extraction_jobs_queued_session ON extraction_jobs (user_id, session_id)
    WHERE state = 1 AND session_id IS NOT NULL;
-- The worker's next job of a session, and the sweep for jobs whose enqueue was lost.
CREATE INDEX extraction_jobs_open ON extraction_jobs (update_time) WHERE state IN (1, 2);
CREATE INDEX extraction_jobs_session ON extraction_jobs (user_id, session_id, create_time);
-- Finished jobs are deleted after settings.extract_job_retention.
CREATE INDEX extraction_jobs_finished ON extraction_jobs (update_time) WHERE state IN (3, 4);
