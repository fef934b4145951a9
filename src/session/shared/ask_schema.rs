//! Schema migration 6: an `ask:` in the store belongs to the engine that runs the run.
//!
//! Attack 13 (D0) showed that with migration 4 any team member could insert a run's
//! `runbook_ask` row first (its insert policy let anyone in), become the row's `operator`, and
//! so read the answers given to it (the reply policy trusts the ask's operator) and write the
//! verdicts the answerers see (`runbook_ask_verdict` had no row-level security at all).
//!
//! Who owns a run is decided by the server, not by a column anyone could write: the run's
//! engine holds a session advisory lock on the run for as long as it runs it
//! (`session/shared/journal.rs`: key space `0x7275_6e00`, second key = the first 7 hex digits
//! of SHA-256(run id)). `runbook_run_engine(run)` returns the authenticated role
//! (`pg_stat_activity.usename`, the session user, visible to every role) of the session that
//! holds that lock now, or NULL when no engine runs the run. An advisory lock can be taken by
//! any role (with plain SQL, while the run is paused), so `runbook_run_operator(run)` is that
//! role only when it also owns the run in the sense of migration 5 (`created_by`, or a role
//! that is a member of it: the only roles that can append the run's records). Then:
//!
//! - `runbook_ask`: only the run's operator may insert an ask, or update one (taking over a
//!   row left by an earlier engine, e.g. after `kill -9`); an earlier owner may still delete
//!   its own row;
//! - `runbook_ask_reply`: besides its author, only a role that is both the ask's operator and
//!   the run's operator sees and takes an answer;
//! - `runbook_ask_verdict` gains the run, the step, the answerer and the engine (stamped with
//!   `session_user` by a trigger); only the run's operator may insert a verdict for its own
//!   ask, the answerer may read (and delete) only verdicts about their own answers, and the key
//!   is (reply id, engine), so a verdict forged in advance can neither be taken for the real
//!   one nor keep it out;
//! - asks, answers and verdicts in flight when the migration runs are dropped (an engine of
//!   an older version could not go on with this schema anyway).
//!
//! `runbook answer` also refuses an ask whose operator is not the run's operator
//! (`ask::hello`), and reads only verdicts written by that role (`ask::send`).

/// The SQL of migration 6 (run by `store init` in its transaction; never edit once applied).
pub(super) const ASK_OWNER: &str = "
DELETE FROM runbook_ask_verdict;
DELETE FROM runbook_ask_reply;
DELETE FROM runbook_ask;
CREATE FUNCTION runbook_run_engine(run text) RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT a.usename::text
      FROM pg_catalog.pg_locks l
      JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = pg_catalog.current_database())
       AND l.classid = (x'72756e00'::integer)::oid
       AND l.objid = (('x' || lpad(substr(encode(sha256(convert_to(run, 'UTF8')), 'hex'),
                                         1, 7), 8, '0'))::bit(32)::integer)::oid
     LIMIT 1
$$;
CREATE FUNCTION runbook_run_operator(run text) RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT e.role
      FROM (SELECT runbook_run_engine(run) AS role) e
      JOIN runbook_run r ON r.run_id = run
     WHERE e.role = r.created_by
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles o
                    WHERE o.rolname = r.created_by
                      AND pg_catalog.pg_has_role(e.role::name, o.oid, 'MEMBER'))
$$;
DROP POLICY runbook_ask_add ON runbook_ask;
DROP POLICY runbook_ask_own ON runbook_ask;
DROP POLICY runbook_ask_end ON runbook_ask;
CREATE POLICY runbook_ask_add ON runbook_ask FOR INSERT
    WITH CHECK (runbook_run_operator(run_id) = session_user);
CREATE POLICY runbook_ask_own ON runbook_ask FOR UPDATE
    USING (operator = session_user OR runbook_run_operator(run_id) = session_user)
    WITH CHECK (runbook_run_operator(run_id) = session_user);
CREATE POLICY runbook_ask_end ON runbook_ask FOR DELETE
    USING (operator = session_user OR runbook_run_operator(run_id) = session_user);
DROP POLICY runbook_ask_reply_see ON runbook_ask_reply;
DROP POLICY runbook_ask_reply_take ON runbook_ask_reply;
CREATE POLICY runbook_ask_reply_see ON runbook_ask_reply FOR SELECT USING (
    role = session_user OR (runbook_run_operator(run_id) = session_user
        AND EXISTS (SELECT 1 FROM runbook_ask a
                     WHERE a.run_id = runbook_ask_reply.run_id
                       AND a.step = runbook_ask_reply.step
                       AND a.operator = session_user)));
CREATE POLICY runbook_ask_reply_take ON runbook_ask_reply FOR DELETE USING (
    role = session_user OR (runbook_run_operator(run_id) = session_user
        AND EXISTS (SELECT 1 FROM runbook_ask a
                     WHERE a.run_id = runbook_ask_reply.run_id
                       AND a.step = runbook_ask_reply.step
                       AND a.operator = session_user)));
ALTER TABLE runbook_ask_verdict
    ADD COLUMN run_id   text NOT NULL,
    ADD COLUMN step     text NOT NULL,
    ADD COLUMN answerer text NOT NULL,
    ADD COLUMN engine   text NOT NULL DEFAULT session_user,
    DROP CONSTRAINT runbook_ask_verdict_pkey,
    ADD PRIMARY KEY (id, engine);
CREATE FUNCTION runbook_ask_verdict_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.engine := session_user;
    RETURN NEW;
END $$;
CREATE TRIGGER runbook_ask_verdict_stamp BEFORE INSERT OR UPDATE ON runbook_ask_verdict
    FOR EACH ROW EXECUTE FUNCTION runbook_ask_verdict_stamp();
ALTER TABLE runbook_ask_verdict ENABLE ROW LEVEL SECURITY;
CREATE POLICY runbook_ask_verdict_give ON runbook_ask_verdict FOR INSERT WITH CHECK (
    engine = session_user AND runbook_run_operator(run_id) = session_user
    AND EXISTS (SELECT 1 FROM runbook_ask a
                 WHERE a.run_id = runbook_ask_verdict.run_id
                   AND a.step = runbook_ask_verdict.step
                   AND a.operator = session_user));
CREATE POLICY runbook_ask_verdict_see ON runbook_ask_verdict FOR SELECT
    USING (answerer = session_user OR engine = session_user);
CREATE POLICY runbook_ask_verdict_take ON runbook_ask_verdict FOR DELETE
    USING (answerer = session_user OR engine = session_user);
";
