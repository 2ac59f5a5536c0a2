"""What the ``task_run`` event triggers cost a bulk statement, and cheaper forms tried.

On one database migrated to head, the ``task_run`` triggers are replaced in turn by
each variant below, and five statements of a cycle of ``--tasks`` task runs are
timed, each its own transaction: insert them waiting, claim them (status changed),
renew their leases and set their host (status unchanged), finish them (status
changed). The variants alternate, ``--rounds`` times; medians are printed, with
the event rows each variant wrote. The shipped triggers are restored at the end
(the database is dropped anyway).

    python benchmarks/event_triggers.py [--tasks 1000] [--rounds 7] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import time

import psycopg2
from _common import add_database_option, bench_database, header, median

ROW_FUNCTION = """
CREATE OR REPLACE FUNCTION bench_task_run_event_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event (kind, dag_run_id, task_run_id, dag_name, task_name, attempt, status)
    SELECT CASE WHEN TG_OP = 'INSERT' THEN
                CASE WHEN NEW.attempt > 1 THEN 'task_run_retried' ELSE 'task_run_created' END
           WHEN NEW.status = 'running' THEN 'task_run_started'
           ELSE 'task_run_' || NEW.status END,
           NEW.dag_run_id, NEW.id, r.dag_name, NEW.task_name, NEW.attempt, NEW.status
    FROM dag_run r WHERE r.id = NEW.dag_run_id;
    RETURN NULL;
END $$
"""
UNORDERED_FUNCTION = """
CREATE OR REPLACE FUNCTION bench_task_run_events_unordered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event (kind, dag_run_id, task_run_id, dag_name, task_name, attempt, status)
        SELECT CASE WHEN n.attempt > 1 THEN 'task_run_retried' ELSE 'task_run_created' END,
               n.dag_run_id, n.id, r.dag_name, n.task_name, n.attempt, n.status
        FROM new_rows n JOIN dag_run r ON r.id = n.dag_run_id;
    ELSE
        INSERT INTO event (kind, dag_run_id, task_run_id, dag_name, task_name, attempt, status)
        SELECT CASE WHEN n.status = 'running' THEN 'task_run_started'
                    ELSE 'task_run_' || n.status END,
               n.dag_run_id, n.id, r.dag_name, n.task_name, n.attempt, n.status
        FROM new_rows n JOIN old_rows o ON o.id = n.id JOIN dag_run r ON r.id = n.dag_run_id
        WHERE n.status IS DISTINCT FROM o.status;
    END IF;
    RETURN NULL;
END $$
"""
INSERT_STATEMENT = (
    "CREATE TRIGGER task_run_insert_events AFTER INSERT ON task_run "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
)
UPDATE_STATEMENT = (
    "CREATE TRIGGER task_run_update_events AFTER UPDATE ON task_run "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
)
INSERT_ROW = (
    "CREATE TRIGGER task_run_insert_events AFTER INSERT ON task_run "
    "FOR EACH ROW EXECUTE FUNCTION bench_task_run_event_row()"
)
UPDATE_ROW = (
    "CREATE TRIGGER task_run_update_events AFTER UPDATE OF status ON task_run FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION bench_task_run_event_row()"
)
SHIPPED = "workflows_task_run_events"
VARIANTS: dict[str, list[str]] = {
    "none": [],
    "statement-level (as shipped)": [
        INSERT_STATEMENT.format(function=SHIPPED),
        UPDATE_STATEMENT.format(function=SHIPPED),
    ],
    "statement-level without ORDER BY": [
        UNORDERED_FUNCTION,
        INSERT_STATEMENT.format(function="bench_task_run_events_unordered"),
        UPDATE_STATEMENT.format(function="bench_task_run_events_unordered"),
    ],
    "row-level, status changes only": [ROW_FUNCTION, INSERT_ROW, UPDATE_ROW],
    "statement-level insert, row-level update": [
        ROW_FUNCTION,
        INSERT_STATEMENT.format(function=SHIPPED),
        UPDATE_ROW,
    ],
}
STEPS = {
    "insert": (
        "INSERT INTO task_run (dag_run_id, task_name, attempt, status, created_at, not_before) "
        "SELECT %(run)s, 't' || g, 1, 'waiting', now(), now() FROM generate_series(1, %(n)s) g"
    ),
    "claim": (
        "UPDATE task_run SET status = 'running', started_at = now(), "
        "lease_expires_at = now() + interval '1 minute' "
        "WHERE dag_run_id = %(run)s AND status = 'waiting'"
    ),
    "lease": (
        "UPDATE task_run SET lease_expires_at = now() + interval '2 minutes' "
        "WHERE dag_run_id = %(run)s"
    ),
    "host": "UPDATE task_run SET host = 'h' WHERE dag_run_id = %(run)s",
    "finish": (
        "UPDATE task_run SET status = 'succeeded', ended_at = now() "
        "WHERE dag_run_id = %(run)s AND status = 'running'"
    ),
}


def use(cur: psycopg2.extensions.cursor, variant: str) -> None:
    cur.execute("DROP TRIGGER IF EXISTS task_run_insert_events ON task_run")
    cur.execute("DROP TRIGGER IF EXISTS task_run_update_events ON task_run")
    for statement in VARIANTS[variant]:
        cur.execute(statement)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    add_database_option(parser)
    args = parser.parse_args()
    with bench_database(args.database_url, "event_triggers") as db:
        header("event triggers", db)
        conn = psycopg2.connect(db.url)
        cur = conn.cursor()
        times: dict[tuple[str, str], list[float]] = {(v, s): [] for v in VARIANTS for s in STEPS}
        events: dict[str, int] = {}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                use(cur, variant)
                cur.execute(
                    "INSERT INTO dag_run (dag_name, status, trigger, creator, parameters, "
                    "created_at) VALUES ('d', 'running', 'manual', 'bench', '{}', now()) "
                    "RETURNING id"
                )
                row = cur.fetchone()
                assert row is not None
                conn.commit()
                for step, sql in STEPS.items():
                    started = time.perf_counter()
                    cur.execute(sql, {"run": row[0], "n": args.tasks})
                    conn.commit()
                    times[(variant, step)].append(time.perf_counter() - started)
                cur.execute("SELECT count(*) FROM event WHERE dag_run_id = %s", (row[0],))
                counted = cur.fetchone()
                events[variant] = int(counted[0]) if counted else 0
                cur.execute("DELETE FROM task_run WHERE dag_run_id = %s", (row[0],))
                cur.execute("DELETE FROM event")
                conn.commit()
        use(cur, "statement-level (as shipped)")
        conn.commit()
        conn.close()
        print(f"\n## {args.tasks} task runs, medians of {args.rounds} rounds (ms)")
        print("| task_run triggers | " + " | ".join(STEPS) + " | all | event rows |")
        print("| --- |" + " --- |" * (len(STEPS) + 2))
        for variant in VARIANTS:
            cells = [median(times[(variant, step)]) * 1000 for step in STEPS]
            shown = " | ".join(f"{cell:.1f}" for cell in cells)
            print(f"| {variant} | {shown} | {sum(cells):.1f} | {events[variant]} |")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
