-- switchboard_fence (0024) runs in every batch's statement. It ran a query for the lost
-- partitions even when there were none, about 20 µs a statement (at a few hundred
-- messages a second the router writes about one statement for every two messages). A
-- containment test now answers the common case, and the query runs only to name the
-- partitions lost. Same arguments, result and error as before.
CREATE OR REPLACE FUNCTION switchboard_fence(held int[], renewed int[]) RETURNS int
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lost int[];
BEGIN
    IF held <@ renewed THEN
        RETURN 0;
    END IF;
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
