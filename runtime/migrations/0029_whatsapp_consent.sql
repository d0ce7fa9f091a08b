-- A WhatsApp user may be known by two addresses: their number and the business-scoped user
-- id WhatsApp gives them (a username can hide the number), one account linked to one
-- customer (customer_identities, source 'provider'). On WhatsApp the latest consent change
-- of any WhatsApp address of the customer decides (runtime.outbound.OPTED_OUT): the
-- consents of a customer's identities are found by this index.
CREATE INDEX consents_whatsapp_by_customer ON consents (domain, customer_id)
    WHERE channel = 'whatsapp';
