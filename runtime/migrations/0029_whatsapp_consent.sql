-- A WhatsApp user may be known by two addresses: their number and the business-scoped user
-- id WhatsApp gives them (a username can hide the number). Both are the same WhatsApp
-- account, linked to one customer (customer_identities, source 'provider'). On WhatsApp the
-- latest consent change of any WhatsApp address of the customer decides, so that a STOP
-- sent under one address stops business-started messages to the other. On every other
-- channel an address's own consent decides, as before.
CREATE INDEX consents_whatsapp_by_customer ON consents (domain, customer_id)
    WHERE channel = 'whatsapp';

CREATE FUNCTION switchboard_opted_out(p_domain text, p_channel text, p_address text,
                                      p_customer_id text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    WITH profile AS (
        SELECT coalesce((SELECT ci.customer_id FROM customer_identities ci
                         WHERE ci.domain = p_domain AND ci.identity = p_customer_id),
                        p_customer_id) AS id
    ), named AS (
        -- The customer's identities: the profile's own id and every identity linked to
        -- it (a profile merged into it is one of them).
        SELECT id AS identity FROM profile
        UNION
        SELECT ci.identity FROM customer_identities ci, profile
        WHERE ci.domain = p_domain AND ci.customer_id = profile.id
    )
    SELECT coalesce((
        SELECT c.consent = 'opt_out' FROM consents c
        WHERE c.domain = p_domain AND c.channel = p_channel
          AND (c.address = p_address
               OR (p_channel = 'whatsapp' AND p_customer_id IS NOT NULL
                   AND c.customer_id IN (SELECT identity FROM named)))
        ORDER BY c.changed_at DESC
        LIMIT 1
    ), false)
$$;
