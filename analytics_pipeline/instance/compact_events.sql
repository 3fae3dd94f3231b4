-- The compact layout of the event storage (analytics_pipeline/instance/compact_events.py):
-- Dagster's event_logs and asset_event_tags become tables under views of the same names, which
-- add the compact events (a template per batch, the values per partition). Run once per
-- database, in one transaction, by compact_events.install.
ALTER TABLE event_logs RENAME TO event_log_rows;
ALTER TABLE asset_event_tags RENAME TO asset_event_tag_rows;

CREATE TABLE event_log_templates (
    id bigserial PRIMARY KEY,
    run_id varchar(255),
    dagster_event_type text NOT NULL,
    step_key text,
    asset_key text,
    -- the event's JSON around its values, as a JSON array of the pieces between them
    pieces text NOT NULL,
    -- the indexed tags: a JSON object of tag key -> 1-based position of its value in vals
    tag_keys text NOT NULL
);
CREATE INDEX idx_event_log_templates_run ON event_log_templates (run_id);
CREATE INDEX idx_event_log_templates_asset ON event_log_templates (asset_key, dagster_event_type);

CREATE TABLE event_log_compact (
    id bigint PRIMARY KEY,
    template_id bigint NOT NULL,
    timestamp timestamp,
    partition text NOT NULL,
    -- the JSON-encoded values, in template order, joined by chr(31)
    vals text NOT NULL
);
CREATE INDEX idx_event_log_compact_partition ON event_log_compact (template_id, partition, id);

CREATE FUNCTION ap_filled_event(pieces text, vals text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT string_agg(p.piece || coalesce(v.value, ''), '' ORDER BY p.i)
    FROM json_array_elements_text(pieces::json) WITH ORDINALITY AS p(piece, i)
    LEFT JOIN unnest(string_to_array(vals, chr(31))) WITH ORDINALITY AS v(value, i) USING (i)
$fn$;

CREATE VIEW event_logs AS
    SELECT id, run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition
    FROM event_log_rows
    UNION ALL
    SELECT c.id, t.run_id, ap_filled_event(t.pieces, c.vals), t.dagster_event_type,
           c.timestamp, t.step_key, t.asset_key, c.partition
    FROM event_log_compact c JOIN event_log_templates t ON t.id = c.template_id;
ALTER VIEW event_logs ALTER COLUMN id SET DEFAULT nextval('event_logs_id_seq');

CREATE VIEW asset_event_tags AS
    SELECT id, event_id, asset_key, key, value, event_timestamp FROM asset_event_tag_rows
    UNION ALL
    SELECT NULL::bigint, c.id, t.asset_key, k.key,
           split_part(c.vals, chr(31), k.position::int)::json #>> '{}', c.timestamp
    FROM event_log_compact c JOIN event_log_templates t ON t.id = c.template_id
    CROSS JOIN LATERAL json_each_text(t.tag_keys::json) AS k(key, position);
ALTER VIEW asset_event_tags ALTER COLUMN id SET DEFAULT nextval('asset_event_tags_id_seq');

CREATE FUNCTION ap_event_logs_write() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    template bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event_log_rows (id, run_id, event, dagster_event_type, timestamp, step_key,
                                  asset_key, partition)
        VALUES (coalesce(NEW.id, nextval('event_logs_id_seq')), NEW.run_id, NEW.event,
                NEW.dagster_event_type, NEW.timestamp, NEW.step_key, NEW.asset_key,
                NEW.partition)
        RETURNING id INTO NEW.id;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE event_log_rows SET id = NEW.id, run_id = NEW.run_id, event = NEW.event,
            dagster_event_type = NEW.dagster_event_type, timestamp = NEW.timestamp,
            step_key = NEW.step_key, asset_key = NEW.asset_key, partition = NEW.partition
        WHERE id = OLD.id;
        IF FOUND THEN
            RETURN NEW;
        END IF;
        -- A compact event rewritten (the erasure's pseudonymisation): it becomes a row of its
        -- own, and its derived tags rows of their own.
        INSERT INTO asset_event_tag_rows (event_id, asset_key, key, value, event_timestamp)
            SELECT NEW.id, d.asset_key, d.key, d.value, d.event_timestamp
            FROM asset_event_tags d WHERE d.event_id = OLD.id AND d.id IS NULL;
    END IF;
    -- DELETE, or the rest of a compact event's UPDATE
    IF TG_OP = 'DELETE' THEN
        DELETE FROM event_log_rows WHERE id = OLD.id;
        IF FOUND THEN
            RETURN OLD;
        END IF;
    END IF;
    DELETE FROM event_log_compact WHERE id = OLD.id RETURNING template_id INTO template;
    IF template IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM event_log_compact WHERE template_id = template) THEN
        DELETE FROM event_log_templates WHERE id = template;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO event_log_rows (id, run_id, event, dagster_event_type, timestamp, step_key,
                                  asset_key, partition)
        VALUES (NEW.id, NEW.run_id, NEW.event, NEW.dagster_event_type, NEW.timestamp,
                NEW.step_key, NEW.asset_key, NEW.partition);
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$fn$;
CREATE TRIGGER ap_event_logs_write INSTEAD OF INSERT OR UPDATE OR DELETE ON event_logs
    FOR EACH ROW EXECUTE FUNCTION ap_event_logs_write();

-- A compact event's tags exist only while it does: deleting them is a no-op, updating them
-- is refused (nothing in Dagster does it).
CREATE FUNCTION ap_asset_event_tags_write() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO asset_event_tag_rows (id, event_id, asset_key, key, value, event_timestamp)
        VALUES (coalesce(NEW.id, nextval('asset_event_tags_id_seq')), NEW.event_id,
                NEW.asset_key, NEW.key, NEW.value, NEW.event_timestamp)
        RETURNING id INTO NEW.id;
        RETURN NEW;
    END IF;
    IF OLD.id IS NULL THEN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'the tags of a compact event (%) cannot be updated', OLD.event_id;
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE asset_event_tag_rows SET id = NEW.id, event_id = NEW.event_id, asset_key = NEW.asset_key,
            key = NEW.key, value = NEW.value, event_timestamp = NEW.event_timestamp
        WHERE id = OLD.id;
        RETURN NEW;
    END IF;
    DELETE FROM asset_event_tag_rows WHERE id = OLD.id;
    RETURN OLD;
END
$fn$;
CREATE TRIGGER ap_asset_event_tags_write INSTEAD OF INSERT OR UPDATE OR DELETE ON asset_event_tags
    FOR EACH ROW EXECUTE FUNCTION ap_asset_event_tags_write();
