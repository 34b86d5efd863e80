-- Errors keep PostgreSQL's SQLSTATE and position; tags and row counts are PostgreSQL's.

CREATE TABLE case_err (id int PRIMARY KEY, v text NOT NULL)

INSERT INTO case_err VALUES (1, 'a'), (2, 'b')

INSERT INTO case_err VALUES (1, 'dup')

INSERT INTO case_err VALUES (3, NULL)

SELECT nosuchcolumn FROM case_err

SELECT 1/0

UPDATE case_err SET v = v || '!' WHERE id > 0

DELETE FROM case_err WHERE id = 2 RETURNING id, v

BEGIN; INSERT INTO case_err VALUES (5, 'x'); SELECT 1/0; COMMIT

SELECT id, v FROM case_err ORDER BY id

SELECT pg_sleep(0)

SELECT 1 AS a, 'two' AS b, NULL::int AS c; SELECT 2

DROP TABLE case_err
