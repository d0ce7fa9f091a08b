-- Measured workload (runtime.workload): what each queue and channel of a domain asked of
-- its people, per 15-minute interval (UTC), measured by the routers as they run and
-- back-filled from the recorded history (`switchboard workload backfill`). Only sums and
-- counts, so that a 30- or 60-minute interval, a day or a week is the sum of its rows;
-- averages and ratios are computed from the sums when read. Nothing names a customer, a
-- conversation or an agent, so retention and erasure leave the rows: they outlive the
-- routing history they were measured from, which is what forecasting needs.
CREATE TABLE workload_intervals (
    domain                   text NOT NULL,
    interval_start           timestamptz NOT NULL
        CHECK (extract(epoch FROM interval_start) % 900 = 0),
    queue                    text NOT NULL,
    channel                  text NOT NULL,
    arrivals                 integer NOT NULL,
    assigned                 integer NOT NULL,
    abandoned                integer NOT NULL,
    wait_count               integer NOT NULL,
    wait_seconds_sum         double precision NOT NULL,
    waits_within_20s         integer NOT NULL,
    waits_within_30s         integer NOT NULL,
    waits_within_60s         integer NOT NULL,
    waits_within_120s        integer NOT NULL,
    waits_within_300s        integer NOT NULL,
    waits_within_900s        integer NOT NULL,
    waits_within_3600s       integer NOT NULL,
    waits_within_14400s      integer NOT NULL,
    waits_within_86400s      integer NOT NULL,
    active_handle_seconds    double precision NOT NULL,
    agent_replies            integer NOT NULL,
    first_reply_count        integer NOT NULL,
    first_reply_seconds_sum  double precision NOT NULL,
    next_reply_count         integer NOT NULL,
    next_reply_seconds_sum   double precision NOT NULL,
    conversation_seconds     double precision NOT NULL,
    busy_agent_seconds       double precision NOT NULL,
    measured_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, interval_start, queue, channel)
);

-- When a router last measured each domain: the routers' job skips a domain another router
-- measured less than an interval ago.
CREATE TABLE workload_marks (
    domain       text PRIMARY KEY,
    measured_at  timestamptz NOT NULL
);

-- What a measurement reads by time. Owner periods overlapping a window: those that ended
-- in or after it (or have not ended), the start read from the index entry. Conversations
-- by opening time: opened_at never changes, so the router's rewrites of open
-- conversations stay HOT (0005, 0013). Agents' replies by time: created_at never changes.
CREATE INDEX assignments_by_end ON assignments (domain, ended_at, accepted_at);
CREATE INDEX conversations_by_opening ON conversations (domain, opened_at);
CREATE INDEX outbound_replies_by_time ON outbound_messages (domain, created_at) WHERE kind = 'reply' AND agent_id IS NOT NULL;
