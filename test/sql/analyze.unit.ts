// Table-driven tests of statement classification: every Kind, with the
// statements real clients send (pgbench TPC-B, ActiveMQ's JDBC store) and the
// grammar corners the router and lock manager depend on.
import t from 'tap'
import { initParser } from '../../src/sql/analyze.ts'
import { check, type Expect } from './helpers.ts'

await initParser()

type Case = [sql: string, expect: Expect]

const pgbench: Case[] = [
  ['BEGIN;', { kind: 'transaction', command: 'BEGIN', tx: { op: 'begin' } }],
  ['UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;', { kind: 'write', command: 'UPDATE', writes: ['pgbench_accounts'], unknownWrites: false, lockingClause: false }],
  ['SELECT abalance FROM pgbench_accounts WHERE aid = $1;', { kind: 'read', command: 'SELECT', reads: ['pgbench_accounts'] }],
  ['SELECT abalance FROM pgbench_accounts WHERE aid = 1', { kind: 'read', command: 'SELECT', reads: ['pgbench_accounts'] }],
  ['UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;', { kind: 'write', writes: ['pgbench_tellers'] }],
  ['UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;', { kind: 'write', writes: ['pgbench_branches'] }],
  [
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);',
    { kind: 'write', command: 'INSERT', writes: ['pgbench_history'], functions: ['now'], sqlValueFunctions: ['current_timestamp'] },
  ],
  ['END;', { kind: 'transaction', command: 'COMMIT', tx: { op: 'commit' } }],
]

const activemq: Case[] = [
  [
    'INSERT INTO ACTIVEMQ_MSGS(ID, MSGID_PROD, MSGID_SEQ, CONTAINER, EXPIRATION, PRIORITY, MSG, XID) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
    { kind: 'write', command: 'INSERT', writes: ['activemq_msgs'] },
  ],
  ['SELECT * FROM ACTIVEMQ_LOCK FOR UPDATE', { kind: 'write', command: 'SELECT', reads: ['activemq_lock'], writes: ['activemq_lock'], lockingClause: true }],
  ['DELETE FROM ACTIVEMQ_MSGS WHERE ID=$1', { kind: 'write', command: 'DELETE', writes: ['activemq_msgs'] }],
  ['UPDATE ACTIVEMQ_LOCK SET TIME = $1, BROKER_NAME = $2 WHERE ID = 1', { kind: 'write', writes: ['activemq_lock'] }],
  ['SELECT ID, MSG FROM ACTIVEMQ_MSGS WHERE CONTAINER=$1 AND ID > $2 AND ID < $3 AND XID IS NULL ORDER BY ID', { kind: 'read', reads: ['activemq_msgs'] }],
  ['SELECT MAX(ID) FROM ACTIVEMQ_MSGS', { kind: 'read', reads: ['activemq_msgs'], functions: ['max'] }],
  [
    'SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED',
    {
      kind: 'session',
      command: 'SET',
      session: { op: 'set', name: 'default_transaction_isolation', value: 'read uncommitted' },
    },
  ],
  [
    'CREATE TABLE ACTIVEMQ_ACKS(CONTAINER VARCHAR(250) NOT NULL, SUB_DEST VARCHAR(250), CLIENT_ID VARCHAR(250) NOT NULL, SUB_NAME VARCHAR(250) NOT NULL, SELECTOR VARCHAR(250), LAST_ACKED_ID BIGINT, PRIMARY KEY ( CONTAINER, CLIENT_ID, SUB_NAME))',
    { kind: 'ddl', command: 'CREATE TABLE', writes: ['activemq_acks'], unknownWrites: false },
  ],
  ['CREATE INDEX ACTIVEMQ_MSGS_MIDX ON ACTIVEMQ_MSGS (MSGID_PROD,MSGID_SEQ)', { kind: 'ddl', command: 'CREATE INDEX', writes: ['activemq_msgs'] }],
  ['ALTER TABLE ACTIVEMQ_MSGS ADD PRIORITY BIGINT', { kind: 'ddl', command: 'ALTER TABLE', writes: ['activemq_msgs'] }],
]

const names: Case[] = [
  ['SELECT * FROM "MixedCase"."Tbl" JOIN Sch.Other o USING (id)', { kind: 'read', reads: ['MixedCase.Tbl', 'sch.other'] }],
  ['SELECT * FROM mydb.s.t', { kind: 'read', reads: ['s.t'] }],
  ['UPDATE "Accounts" a SET x = 1 FROM public.rates r WHERE r.id = a.id', { kind: 'write', reads: ['public.rates'], writes: ['Accounts'] }],
  ['DELETE FROM s.orders o USING customers c WHERE o.cid = c.id', { kind: 'write', reads: ['customers'], writes: ['s.orders'] }],
  ['SELECT pg_catalog.now(), Upper(x), "F"(1) FROM t', { kind: 'read', reads: ['t'], functions: ['pg_catalog.now', 'upper', 'F'] }],
]

const queries: Case[] = [
  ['VALUES (1), (2)', { kind: 'read', command: 'SELECT' }],
  ['TABLE things', { kind: 'read', reads: ['things'] }],
  ['SHOW search_path', { kind: 'read', command: 'SHOW' }],
  [
    "WITH recent AS (SELECT * FROM orders WHERE ts > now() - interval '1 day') SELECT count(*) FROM recent r JOIN items i ON i.oid = r.id",
    { kind: 'read', reads: ['orders', 'items'], functions: ['now', 'count'] },
  ],
  ['WITH moved AS (DELETE FROM queue WHERE id = $1 RETURNING *) INSERT INTO done SELECT * FROM moved', { kind: 'write', command: 'INSERT', writes: ['queue', 'done'] }],
  ['WITH d AS (DELETE FROM log RETURNING id) SELECT count(*) FROM d', { kind: 'write', command: 'SELECT', writes: ['log'] }],
  // a non-recursive CTE cannot see itself: the inner "t" is the real table
  ['WITH t AS (SELECT * FROM t WHERE x) SELECT * FROM t', { kind: 'read', reads: ['t'] }],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r', { kind: 'read', reads: [] }],
  ['INSERT INTO archive (id, v) SELECT id, v FROM live WHERE v < $1', { kind: 'write', reads: ['live'], writes: ['archive'] }],
  ['INSERT INTO counters (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = counters.n + 1 RETURNING n', { kind: 'write', writes: ['counters'] }],
  ['SELECT * FROM a JOIN b ON a.id = b.aid JOIN (SELECT * FROM c) sub ON true FOR UPDATE OF a, sub', { kind: 'write', reads: ['a', 'b', 'c'], writes: ['a', 'c'], lockingClause: true }],
  ['SELECT * FROM jobs FOR NO KEY UPDATE SKIP LOCKED LIMIT 1', { kind: 'write', writes: ['jobs'], reads: ['jobs'], lockWait: 'skip_locked' }],
  ['SELECT * FROM t1, t2 FOR KEY SHARE OF t2 NOWAIT', { kind: 'write', reads: ['t1', 't2'], writes: ['t2'], lockWait: 'nowait' }],
  ['SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)', { kind: 'write', reads: ['t', 'u'], writes: ['u'], lockingClause: true }],
  ['SELECT * INTO TEMP snapshot FROM accounts', { kind: 'write', command: 'SELECT', reads: ['accounts'], writes: ['snapshot'], temp: true }],
  [
    "SELECT nextval('order_seq'), setval('s', 1), pg_advisory_lock(42)",
    {
      kind: 'read',
      functions: ['nextval', 'setval', 'pg_advisory_lock'],
    },
  ],
  [
    'SELECT LOCALTIMESTAMP(3), CURRENT_DATE, CURRENT_USER, SESSION_USER, CURRENT_SCHEMA',
    {
      kind: 'read',
      functions: ['now', 'current_user', 'current_schema'],
      sqlValueFunctions: ['localtimestamp', 'current_date', 'current_user', 'session_user', 'current_schema'],
    },
  ],
  ["SELECT jt.* FROM docs d, JSON_TABLE(d.body, '$.items[*]' COLUMNS (id int PATH '$.id', name text PATH '$.name')) AS jt", { kind: 'read', reads: ['docs'] }],
  [
    'MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED BY SOURCE THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.qty) RETURNING merge_action(), s.*',
    { kind: 'write', command: 'MERGE', reads: ['deliveries'], writes: ['stock'], functions: ['merge_action'] },
  ],
  // PostgreSQL 18: RETURNING OLD/NEW
  ['UPDATE prices SET p = p * 1.1 RETURNING old.p AS before, new.p AS after', { kind: 'write', writes: ['prices'] }],
  ["SELECT pg_notify('jobs', 'go')", { kind: 'session', command: 'SELECT', session: { op: 'notify', name: 'jobs' } }],
]

const copy: Case[] = [
  ['COPY pgbench_accounts FROM STDIN', { kind: 'copy-in', command: 'COPY', writes: ['pgbench_accounts'], copy: { direction: 'in', stdio: true, table: { schema: null, name: 'pgbench_accounts' } } }],
  ['COPY t (a, b) FROM STDIN WITH (FORMAT binary)', { kind: 'copy-in', writes: ['t'], copy: { direction: 'in', stdio: true, binary: true } }],
  ['COPY s.t TO STDOUT WITH (FORMAT csv, HEADER)', { kind: 'copy-out', reads: ['s.t'], copy: { direction: 'out', stdio: true } }],
  ['COPY (SELECT * FROM t WHERE x > 1) TO STDOUT', { kind: 'copy-out', reads: ['t'], copy: { direction: 'out', stdio: true, query: true } }],
  ['COPY (DELETE FROM t RETURNING *) TO STDOUT', { kind: 'not-replicable', writes: ['t'], copy: { query: true } }],
  ["COPY t FROM '/var/lib/data.csv'", { kind: 'not-replicable', writes: ['t'], copy: { direction: 'in', stdio: false } }],
  ["COPY t TO PROGRAM 'gzip > /tmp/t.gz'", { kind: 'not-replicable', reads: ['t'], copy: { direction: 'out', stdio: false } }],
]

const ddl: Case[] = [
  ['CREATE TABLE summary AS SELECT k, sum(v) FROM facts GROUP BY k', { kind: 'ddl', command: 'CREATE TABLE AS', reads: ['facts'], writes: ['summary'] }],
  ['CREATE TEMP TABLE scratch (id int)', { kind: 'ddl', command: 'CREATE TABLE', writes: ['scratch'], temp: true }],
  ['CREATE TABLE pg_temp.scratch2 (id int)', { kind: 'ddl', writes: ['pg_temp.scratch2'], temp: true }],
  ['CREATE TEMPORARY VIEW v AS SELECT * FROM t', { kind: 'ddl', command: 'CREATE VIEW', reads: ['t'], writes: ['v'], temp: true }],
  ['CREATE INDEX CONCURRENTLY idx_a ON accounts (email)', { kind: 'ddl', command: 'CREATE INDEX', writes: ['accounts'], noTransactionBlock: true }],
  ['DROP INDEX CONCURRENTLY idx_a', { kind: 'ddl', command: 'DROP INDEX', writes: ['idx_a'], unknownWrites: true, noTransactionBlock: true }],
  ['DROP TABLE IF EXISTS a, s.b', { kind: 'ddl', command: 'DROP TABLE', writes: ['a', 's.b'], unknownWrites: false }],
  ['DROP TABLE a CASCADE', { kind: 'ddl', writes: ['a'], unknownWrites: true }],
  ['ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (cid) REFERENCES customers (id)', { kind: 'ddl', writes: ['orders', 'customers'] }],
  ['ALTER TABLE t ADD COLUMN created timestamptz DEFAULT clock_timestamp()', { kind: 'ddl', writes: ['t'], functions: ['clock_timestamp'] }],
  ['ALTER TABLE s.t RENAME TO u', { kind: 'ddl', command: 'ALTER TABLE', writes: ['s.t', 's.u'] }],
  ['CREATE TABLE gen (a int, b int GENERATED ALWAYS AS (a * 2) VIRTUAL)', { kind: 'ddl', writes: ['gen'] }],
  ["COMMENT ON COLUMN s.t.c IS 'note'", { kind: 'ddl', command: 'COMMENT', writes: ['s.t'] }],
  ['GRANT SELECT ON t, s.u TO reader', { kind: 'ddl', command: 'GRANT', writes: ['t', 's.u'], unknownWrites: false }],
  ['REVOKE EXECUTE ON FUNCTION f(int) FROM PUBLIC', { kind: 'ddl', command: 'REVOKE', unknownWrites: true }],
  ['CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS $$ SELECT $1 + 1 $$', { kind: 'ddl', command: 'CREATE FUNCTION', unknownWrites: true, functions: [] }],
  ['CREATE SCHEMA app', { kind: 'ddl', command: 'CREATE SCHEMA', unknownWrites: true }],
  ['CREATE MATERIALIZED VIEW mv AS SELECT * FROM t', { kind: 'ddl', command: 'CREATE MATERIALIZED VIEW', reads: ['t'], writes: ['mv'] }],
  ["ALTER SYSTEM SET work_mem = '64MB'", { kind: 'ddl', command: 'ALTER SYSTEM', unknownWrites: true, noTransactionBlock: true }],
  ['CREATE DATABASE other', { kind: 'ddl', command: 'CREATE DATABASE', noTransactionBlock: true }],
]

const maintenance: Case[] = [
  ['TRUNCATE a, b', { kind: 'write', command: 'TRUNCATE TABLE', writes: ['a', 'b'], unknownWrites: false }],
  ['VACUUM (ANALYZE) accounts', { kind: 'write', command: 'VACUUM', writes: ['accounts'], noTransactionBlock: true }],
  ['VACUUM', { kind: 'write', command: 'VACUUM', unknownWrites: true, noTransactionBlock: true }],
  ['ANALYZE accounts', { kind: 'write', command: 'ANALYZE', writes: ['accounts'], noTransactionBlock: false }],
  ['REINDEX TABLE CONCURRENTLY accounts', { kind: 'write', command: 'REINDEX', writes: ['accounts'], noTransactionBlock: true }],
  ['CLUSTER', { kind: 'write', command: 'CLUSTER', unknownWrites: true, noTransactionBlock: true }],
  ['LOCK TABLE a, s.b IN SHARE ROW EXCLUSIVE MODE', { kind: 'write', command: 'LOCK TABLE', writes: ['a', 's.b'] }],
  ['REFRESH MATERIALIZED VIEW CONCURRENTLY mv', { kind: 'write', command: 'REFRESH MATERIALIZED VIEW', writes: ['mv'] }],
  ['DO $$ BEGIN PERFORM 1; END $$', { kind: 'write', command: 'DO', unknownWrites: true }],
  ['CALL transfer($1, $2, now())', { kind: 'write', command: 'CALL', unknownWrites: true, functions: ['transfer', 'now'] }],
  ['EXPLAIN SELECT * FROM t', { kind: 'read', command: 'EXPLAIN', reads: ['t'] }],
  // plain EXPLAIN only plans: the target is locked for planning, never written
  ['EXPLAIN (COSTS off) DELETE FROM t WHERE id = 1', { kind: 'read', command: 'EXPLAIN', reads: ['t'] }],
  ['EXPLAIN ANALYZE SELECT * FROM t', { kind: 'read', command: 'EXPLAIN', reads: ['t'] }],
  ['EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET v = 1', { kind: 'write', command: 'EXPLAIN', writes: ['t'] }],
  ['EXPLAIN (ANALYZE false) UPDATE t SET v = 1', { kind: 'read', reads: ['t'] }],
]

const transactions: Case[] = [
  ['BEGIN ISOLATION LEVEL SERIALIZABLE', { kind: 'transaction', command: 'BEGIN', tx: { op: 'begin', isolation: 'serializable' } }],
  [
    'START TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ',
    {
      kind: 'transaction',
      command: 'START TRANSACTION',
      tx: { op: 'begin', isolation: 'repeatable read', readOnly: true },
    },
  ],
  ['BEGIN READ WRITE', { kind: 'transaction', tx: { op: 'begin', readOnly: false } }],
  ['SAVEPOINT "Sp1"', { kind: 'transaction', command: 'SAVEPOINT', tx: { op: 'savepoint', name: 'Sp1' } }],
  ['ROLLBACK TO SAVEPOINT sp1', { kind: 'transaction', command: 'ROLLBACK', tx: { op: 'rollback_to', name: 'sp1' } }],
  ['RELEASE sp1', { kind: 'transaction', command: 'RELEASE', tx: { op: 'release', name: 'sp1' } }],
  ['ABORT', { kind: 'transaction', command: 'ROLLBACK', tx: { op: 'rollback' } }],
  ['COMMIT AND CHAIN', { kind: 'transaction', command: 'COMMIT', tx: { op: 'commit', chain: true } }],
  ["PREPARE TRANSACTION 'gid-1'", { kind: 'transaction', command: 'PREPARE TRANSACTION', tx: { op: 'prepare', name: 'gid-1' } }],
  ["COMMIT PREPARED 'gid-1'", { kind: 'transaction', tx: { op: 'commit_prepared', name: 'gid-1' }, noTransactionBlock: true }],
  ["ROLLBACK PREPARED 'gid-1'", { kind: 'transaction', tx: { op: 'rollback_prepared', name: 'gid-1' }, noTransactionBlock: true }],
  ['SET TRANSACTION ISOLATION LEVEL READ COMMITTED', { kind: 'transaction', command: 'SET', tx: { op: 'set_transaction', isolation: 'read committed' } }],
]

const session: Case[] = [
  ['SET search_path TO app, public', { kind: 'session', command: 'SET', session: { op: 'set', name: 'search_path', value: 'app, public' } }],
  ['SET LOCAL statement_timeout = 5000', { kind: 'session', session: { op: 'set_local', name: 'statement_timeout', value: '5000' } }],
  ["SET TIME ZONE 'UTC'", { kind: 'session', session: { op: 'set', name: 'timezone', value: 'UTC' } }],
  ['SET ROLE admin', { kind: 'session', session: { op: 'set', name: 'role', value: 'admin' } }],
  ['SET SESSION AUTHORIZATION bob', { kind: 'session', session: { op: 'set', name: 'session_authorization', value: 'bob' } }],
  ['RESET work_mem', { kind: 'session', command: 'RESET', session: { op: 'reset', name: 'work_mem' } }],
  ['RESET ALL', { kind: 'session', command: 'RESET', session: { op: 'reset_all' } }],
  ['DISCARD ALL', { kind: 'session', command: 'DISCARD ALL', session: { op: 'discard_all' }, noTransactionBlock: true }],
  ['DISCARD PLANS', { kind: 'session', command: 'DISCARD PLANS', session: { op: 'discard_other' } }],
  ['EXECUTE fetch_acct(42)', { kind: 'write', command: 'EXECUTE', unknownWrites: true, session: { op: 'other', name: 'fetch_acct' } }],
  ['DEALLOCATE fetch_acct', { kind: 'session', command: 'DEALLOCATE', session: { op: 'deallocate', name: 'fetch_acct' } }],
  ['DEALLOCATE ALL', { kind: 'session', command: 'DEALLOCATE ALL', session: { op: 'deallocate' } }],
  ['LISTEN events', { kind: 'session', command: 'LISTEN', session: { op: 'listen', name: 'events' } }],
  ['UNLISTEN *', { kind: 'session', command: 'UNLISTEN', session: { op: 'unlisten' } }],
  ["NOTIFY events, 'payload'", { kind: 'session', command: 'NOTIFY', session: { op: 'notify', name: 'events', value: 'payload' } }],
  ['FETCH 100 FROM c1', { kind: 'session', command: 'FETCH', session: { op: 'fetch', name: 'c1' } }],
  ['MOVE LAST IN c1', { kind: 'session', command: 'MOVE', session: { op: 'fetch', name: 'c1' } }],
  ['CLOSE c1', { kind: 'session', command: 'CLOSE CURSOR', session: { op: 'close_cursor', name: 'c1' } }],
  ["LOAD 'auto_explain'", { kind: 'session', command: 'LOAD', session: { op: 'other' } }],
  ["SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", { kind: 'not-replicable' }],
]

const groups: Record<string, Case[]> = { pgbench, activemq, names, queries, copy, ddl, maintenance, transactions, session }
for (const [group, cases] of Object.entries(groups)) {
  t.test(group, async (t) => {
    for (const [sql, expect] of cases) t.test(sql, async (t) => void check(t, sql, expect))
  })
}
