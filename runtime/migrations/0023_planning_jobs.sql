-- Long planning runs started through the API (router.api.planning_jobs): a staffing
-- simulation or search, a workload back-fill, a dry run's replay. The process running
-- one writes its progress and a heartbeat every second; a row still running whose
-- heartbeat stopped was interrupted (its process ended). Finished rows are purged 30 days
-- after they finish.
CREATE TABLE planning_jobs (
    domain        text NOT NULL,
    job_id        text NOT NULL CHECK (char_length(job_id) <= 64),
    kind          text NOT NULL CHECK (kind IN ('staffing', 'backfill', 'replay')),
    status        text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    done          integer NOT NULL DEFAULT 0,
    total         integer NOT NULL DEFAULT 0,
    request       jsonb NOT NULL,
    result        jsonb,
    error         text CHECK (char_length(error) <= 512),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (domain, job_id)
);
CREATE INDEX planning_jobs_by_age ON planning_jobs (finished_at) WHERE finished_at IS NOT NULL;
