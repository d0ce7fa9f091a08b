-- A router writes a batch only while it holds the leases of the batch's partitions. The
-- batch's writes are one statement (router.shell.store.write_batch) whose lease part
-- renews the leases it still holds; this function, called by another part with the
-- partitions held and those renewed, fails the statement (every part rolls back) when
-- another router took one. The error's code is SB001, its detail the lost partitions.
CREATE FUNCTION switchboard_fence(held int[], renewed int[]) RETURNS int
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lost int[];
BEGIN
    SELECT coalesce(array_agg(p ORDER BY p), '{}') INTO lost
    FROM unnest(held) AS p
    WHERE NOT p = ANY (renewed);
    IF cardinality(lost) > 0 THEN
        RAISE EXCEPTION 'partitions % are leased to another router', lost
            USING ERRCODE = 'SB001', DETAIL = array_to_string(lost, ',');
    END IF;
    RETURN 0;
END
$$;
