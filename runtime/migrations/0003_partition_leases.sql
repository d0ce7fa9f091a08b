-- Which router owns each input partition. A router bumps the epoch when it takes a
-- partition (holding the row lock while it loads), and every batch transaction first
-- re-locks its partitions' rows at the epochs it took. A router that lost a partition, or
-- died with a transaction still in flight on the server, can therefore never write after
-- the new owner loaded: its transaction either commits before the new owner's load sees
-- the data, or finds a newer epoch and rolls back.
CREATE TABLE partition_leases (
    consumer_group  text NOT NULL,
    partition       integer NOT NULL,
    epoch           bigint NOT NULL,
    owner           text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, partition)
);
