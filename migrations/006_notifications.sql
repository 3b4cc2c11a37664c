-- Notifications: a job's `notify` webhooks get an event when one of its runs fails, is held
-- by a quality gate or is published. The event is written here by a trigger on the run's
-- status change, so it commits (or rolls back) with that change, whatever statement made it;
-- a dispatcher in worker, scheduler and `prescore run` processes posts it later (outbox), so a
-- slow or dead receiver never holds up a run. No foreign key: an event outlives its run.
CREATE TABLE prescore.notifications (
  id            bigserial   PRIMARY KEY,
  run_id        bigint      NOT NULL,
  event         text        NOT NULL,
  url           text        NOT NULL,
  payload       jsonb       NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  -- When the next attempt is due; while an attempt is in flight, when its claim expires.
  next_at       timestamptz NOT NULL DEFAULT now(),
  attempts      integer     NOT NULL DEFAULT 0,
  delivered_at  timestamptz,
  failed_at     timestamptz,   -- gave up after the last attempt
  last_status   integer,       -- the receiver's HTTP status of the last attempt
  last_error    text
);
CREATE INDEX notifications_due ON prescore.notifications (next_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notifications_run ON prescore.notifications (run_id);

CREATE FUNCTION prescore.enqueue_run_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  urls     jsonb := NEW.spec -> 'spec' -> 'notify';
  written  bigint := NEW.rows_written;
  rejected bigint := NEW.rows_rejected;
  breaches jsonb;
  payload  jsonb;
BEGIN
  IF urls IS NULL OR jsonb_typeof(urls) = 'null' THEN RETURN NULL; END IF;
  IF jsonb_typeof(urls) = 'string' THEN urls := jsonb_build_array(urls); END IF;
  -- Only publish records the totals on the run; before that the done chunks hold them.
  IF NEW.status <> 'published' THEN
    SELECT coalesce(sum(rows_written), 0), coalesce(sum(rows_rejected), 0) INTO written, rejected
      FROM prescore.run_chunks WHERE run_id = NEW.id AND status = 'done';
  END IF;
  SELECT r.breaches INTO breaches FROM prescore.run_reports r WHERE r.run_id = NEW.id;
  payload := jsonb_build_object(
    'event', 'run.' || NEW.status, 'job', NEW.job, 'runId', NEW.id::text, 'date', NEW.date::text,
    'status', NEW.status, 'rows', written, 'rejected', rejected, 'at', now());
  IF NEW.status = 'failed' THEN payload := payload || jsonb_build_object('error', NEW.error); END IF;
  IF NEW.status = 'held' THEN payload := payload || jsonb_build_object('heldReason', NEW.held_reason); END IF;
  IF breaches IS NOT NULL AND jsonb_array_length(breaches) > 0 THEN
    payload := payload || jsonb_build_object('gates', breaches);
  END IF;
  INSERT INTO prescore.notifications (run_id, event, url, payload)
    SELECT NEW.id, 'run.' || NEW.status, u, payload FROM jsonb_array_elements_text(urls) AS u;
  RETURN NULL;
END $$;

CREATE TRIGGER runs_enqueue_event AFTER UPDATE OF status ON prescore.runs
  FOR EACH ROW WHEN (NEW.status IN ('failed', 'held', 'published') AND OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION prescore.enqueue_run_event();
