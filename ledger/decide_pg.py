"""Authorization decisions on Postgres: one plpgsql function deciding a whole batch in one round trip.

`hookstream_authorize` takes the batch as parallel arrays and returns one (code, reason, hold id)
row per item, in order. It locks the batch's accounts in id order (batches sharing an account wait,
never deadlock), then per item either decides (claim the dedup key; a redelivery gets the recorded
answer; an operation the platform closed already (`ledger.closed`) is declined; card check;
conditional reserve `balance − held ≥ amount`; hold INSERT … ON CONFLICT DO NOTHING; posting;
answer recorded) or records a fallback answer (the budget ran out: release the hold its own late
decision placed, record the fallback code). Amounts outside 0..p_max_cents are declined item by
item, so no input can fail the statement for the rest of the batch. The rules mirror
`hookstream.domain.authorization` (the SQLite path calls those functions directly).
"""

from __future__ import annotations

from sqlalchemy import Connection

FUNCTION = "hookstream_authorize"

CALL = (f"SELECT o_code, o_reason, o_hold FROM {FUNCTION}("
        "%s::boolean[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], "
        "%s::text[], %s::text[], %s::bigint)")

INSTALL = r"""
CREATE OR REPLACE FUNCTION hookstream_authorize(
    p_fallback boolean[], p_dedup text[], p_card text[], p_operation text[], p_cents bigint[],
    p_hint text[], p_code text[], p_reason text[], p_attempt text[], p_max_cents bigint)
RETURNS TABLE (o_code text, o_reason text, o_hold bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    i int;
    v_now timestamptz := now();
    v_account text;
    v_frozen boolean;
    v_blocked boolean;
    v_hold bigint;
    v_reason text;
    v_row record;
    v_held record;
BEGIN
    PERFORM 1 FROM accounts
     WHERE id IN (SELECT coalesce(l.account_id, b.hint)
                    FROM unnest(p_card, p_hint) AS b(card, hint)
                    LEFT JOIN card_links l ON l.card_id = b.card)
     ORDER BY id
       FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_dedup, 1), 0) LOOP
        o_code := p_code[i];
        o_reason := p_reason[i];
        o_hold := NULL;
        IF p_fallback[i] THEN
            -- The delivery was answered with the fallback code: that answer is the one on record.
            SELECT d.hold_id, d.attempt INTO v_row
              FROM authorization_decisions d WHERE d.dedup_key = p_dedup[i] FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO authorization_decisions AS d (dedup_key, card_id, operation_id, response_code,
                                                          reason, hold_id, attempt, decided_at)
                VALUES (p_dedup[i], p_card[i], p_operation[i], p_code[i], p_reason[i], NULL, p_attempt[i], v_now)
                ON CONFLICT (dedup_key) DO NOTHING;
            ELSIF v_row.attempt = p_attempt[i] THEN
                IF v_row.hold_id IS NOT NULL THEN
                    UPDATE holds h SET status = 'released', updated_at = v_now
                     WHERE h.id = v_row.hold_id AND h.status = 'held'
                    RETURNING h.account_id, h.amount_cents INTO v_held;
                    IF FOUND THEN
                        UPDATE accounts a SET held_cents = a.held_cents - v_held.amount_cents, updated_at = v_now
                         WHERE a.id = v_held.account_id;
                        INSERT INTO postings (account_id, kind, amount_cents, dedup_key, hold_id, memo, created_at)
                        VALUES (v_held.account_id, 'release', v_held.amount_cents, p_dedup[i] || ':late-release',
                                v_row.hold_id, 'late decision released', v_now)
                        ON CONFLICT (kind, dedup_key) DO NOTHING;
                        o_hold := v_row.hold_id;  -- for a fallback item: the late hold it released
                    END IF;
                END IF;
                UPDATE authorization_decisions d
                   SET response_code = p_code[i], reason = p_reason[i], hold_id = NULL, decided_at = v_now
                 WHERE d.dedup_key = p_dedup[i];
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;

        -- Claim the dedup key: a redelivery (or a twin in this batch) gets the answer on record.
        INSERT INTO authorization_decisions AS d (dedup_key, card_id, operation_id, response_code, reason,
                                                  hold_id, attempt, decided_at)
        VALUES (p_dedup[i], p_card[i], p_operation[i], '', '', NULL, p_attempt[i], v_now)
        ON CONFLICT (dedup_key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT d.response_code, d.reason, d.hold_id INTO o_code, o_reason, o_hold
              FROM authorization_decisions d WHERE d.dedup_key = p_dedup[i];
            RETURN NEXT;
            CONTINUE;
        END IF;

        v_reason := NULL;
        v_hold := NULL;
        -- The platform declined (or settled) the operation already: a hold now would never be released.
        -- Read after the account locks above, so a closing transaction that held one is seen committed.
        IF EXISTS (SELECT 1 FROM closed_operations c
                    WHERE c.card_id = p_card[i] AND c.operation_id = p_operation[i]) THEN
            o_code := '05';
            o_reason := 'operation_closed';
            UPDATE authorization_decisions d SET response_code = o_code, reason = o_reason
             WHERE d.dedup_key = p_dedup[i];
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT l.account_id, l.frozen, l.blocked INTO v_account, v_frozen, v_blocked
          FROM card_links l WHERE l.card_id = p_card[i];
        IF NOT FOUND THEN
            IF coalesce(p_hint[i], '') = '' THEN
                v_reason := 'card_not_linked';
            ELSE  -- a new card names its account: link it (the account is created if needed)
                INSERT INTO accounts (id, currency, balance_cents, held_cents, created_at, updated_at)
                VALUES (p_hint[i], 'USD', 0, 0, v_now, v_now) ON CONFLICT (id) DO NOTHING;
                INSERT INTO card_links (card_id, account_id, approval_method, frozen, blocked, created_at,
                                        updated_at)
                VALUES (p_card[i], p_hint[i], NULL, false, false, v_now, v_now) ON CONFLICT (card_id) DO NOTHING;
                v_account := p_hint[i];
                v_frozen := false;
                v_blocked := false;
            END IF;
        END IF;
        IF v_reason IS NULL THEN
            IF v_frozen THEN
                v_reason := 'card_frozen';
            ELSIF v_blocked THEN
                v_reason := 'card_blocked';
            ELSIF p_cents[i] IS NULL OR p_cents[i] < 0 OR p_cents[i] > p_max_cents THEN
                v_reason := 'invalid_amount';
            ELSE
                UPDATE accounts a SET held_cents = a.held_cents + p_cents[i], updated_at = v_now
                 WHERE a.id = v_account AND a.balance_cents - a.held_cents >= p_cents[i];
                IF FOUND THEN
                    INSERT INTO holds (account_id, card_id, operation_id, amount_cents, captured_cents, status,
                                       created_at, updated_at)
                    VALUES (v_account, p_card[i], p_operation[i], p_cents[i], NULL, 'held', v_now, v_now)
                    ON CONFLICT (card_id, operation_id) DO NOTHING
                    RETURNING id INTO v_hold;
                    IF v_hold IS NULL THEN  -- the operation already has a hold: undo the reservation
                        UPDATE accounts a SET held_cents = a.held_cents - p_cents[i] WHERE a.id = v_account;
                        SELECT h.id INTO v_hold FROM holds h
                         WHERE h.card_id = p_card[i] AND h.operation_id = p_operation[i];
                        v_reason := 'duplicate';
                    ELSE
                        INSERT INTO postings (account_id, kind, amount_cents, dedup_key, hold_id, memo, created_at)
                        VALUES (v_account, 'hold', p_cents[i], p_dedup[i], v_hold, 'authorization', v_now)
                        ON CONFLICT (kind, dedup_key) DO NOTHING;
                        v_reason := 'approved';
                    END IF;
                ELSE
                    SELECT h.id INTO v_hold FROM holds h
                     WHERE h.card_id = p_card[i] AND h.operation_id = p_operation[i];
                    IF v_hold IS NOT NULL THEN
                        v_reason := 'duplicate';
                    ELSIF EXISTS (SELECT 1 FROM accounts a WHERE a.id = v_account) THEN
                        v_reason := 'insufficient_funds';
                    ELSE
                        v_reason := 'unknown_account';
                    END IF;
                END IF;
            END IF;
        END IF;
        o_reason := v_reason;
        o_hold := v_hold;
        o_code := CASE WHEN v_reason IN ('approved', 'duplicate') THEN '00'
                       WHEN v_reason = 'insufficient_funds' THEN '51'
                       ELSE '05' END;
        UPDATE authorization_decisions d SET response_code = o_code, reason = o_reason, hold_id = o_hold
         WHERE d.dedup_key = p_dedup[i];
        RETURN NEXT;
    END LOOP;
END
$fn$;
"""


def install(conn: Connection) -> None:
    """Create or replace the function (Postgres only; SQLite decides in Python)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(INSTALL)

