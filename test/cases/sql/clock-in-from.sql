-- Clock calls used as tables in FROM (issue 17, item 6): the clock rewrite made these syntax errors.

-- shape
SELECT * FROM now()

-- shape
SELECT * FROM now() AS t(x)

-- shape
SELECT t.* FROM now() t

-- shape
SELECT * FROM current_timestamp

-- shape
SELECT * FROM transaction_timestamp() WITH ORDINALITY

-- shape
SELECT x FROM generate_series(1, 3) g, LATERAL (SELECT * FROM now()) AS n(x)

CREATE TABLE case_clock (t timestamptz)

INSERT INTO case_clock SELECT * FROM now()

SELECT count(*) FROM case_clock

DROP TABLE case_clock
