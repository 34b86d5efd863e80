"""psycopg2 through pgraid, the way Python applications use it: transactions
opened implicitly (a BEGIN sent alone before the first statement), values
interpolated into the text on the client (every statement a new text),
executemany, RETURNING, errors and savepoints, a named (server-side) cursor,
autocommit. Prints one JSON object with what it saw; exits 1 on a failed
expectation, with the reason on stderr."""
import json
import os
import sys
from decimal import Decimal

import psycopg2
import psycopg2.errors

out = {}


def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


conn = psycopg2.connect(
    host=os.environ["PGHOST"], port=int(os.environ["PGPORT"]), user=os.environ["PGUSER"],
    password=os.environ["PGPASSWORD"], dbname="postgres", connect_timeout=10,
)
cur = conn.cursor()
cur.execute("DROP TABLE IF EXISTS py_accounts")
cur.execute(
    "CREATE TABLE py_accounts (id serial PRIMARY KEY, name text UNIQUE NOT NULL, balance numeric(12,2) NOT NULL,"
    " created timestamptz NOT NULL DEFAULT now(), tag uuid NOT NULL DEFAULT gen_random_uuid(), note text, blob bytea)"
)
conn.commit()

people = [("Ann", Decimal("100.00"), None), ("O'Brien", Decimal("100.00"), "quote ' inside"), ("Zoë", Decimal("100.00"), "line\nbreak"),
          ("Bob", Decimal("100.00"), "back\\slash"), ("Cid", Decimal("100.00"), "")]
cur.executemany("INSERT INTO py_accounts (name, balance, note) VALUES (%s, %s, %s)", people)
conn.commit()

cur.execute("INSERT INTO py_accounts (name, balance, blob) VALUES (%s, %s, %s) RETURNING id, created, created = now() AS same",
            ("Dee", Decimal("100.00"), psycopg2.Binary(bytes(range(256)))))
new_id, created, same = cur.fetchone()
if not same:
    fail("the DEFAULT now() of the inserted row differs from now() in its own transaction")
cur.execute("SELECT now()")
if cur.description[0].name != "now":
    fail("SELECT now() came back as column %r" % cur.description[0].name)
conn.commit()
out["returningId"] = new_id

cur.execute("SELECT id FROM py_accounts ORDER BY id")
ids = [r[0] for r in cur.fetchall()]
conn.commit()

# Transfers, each its own transaction, literals interpolated by psycopg2.
for k in range(60):
    a = ids[k % len(ids)]
    b = ids[(k * 7 + 3) % len(ids)]
    if a == b:
        continue
    amount = Decimal("%d.%02d" % (k % 9, k % 100))
    cur.execute("UPDATE py_accounts SET balance = balance - %s WHERE id = %s", (amount, a))
    cur.execute("UPDATE py_accounts SET balance = balance + %s WHERE id = %s", (amount, b))
    conn.commit()

# A unique violation inside a transaction, then rollback: nothing of it stays.
try:
    cur.execute("UPDATE py_accounts SET note = %s WHERE name = %s", ("about to fail", "Ann"))
    cur.execute("INSERT INTO py_accounts (name, balance) VALUES (%s, %s)", ("Ann", Decimal("1")))
    fail("a duplicate name was accepted")
except psycopg2.errors.UniqueViolation as e:
    out["duplicateCode"] = e.pgcode
    conn.rollback()

# A savepoint rolled back inside a committed transaction.
cur.execute("UPDATE py_accounts SET note = %s WHERE name = %s", ("kept", "Bob"))
cur.execute("SAVEPOINT sp")
cur.execute("UPDATE py_accounts SET balance = balance + 1000 WHERE name = %s", ("Bob",))
cur.execute("ROLLBACK TO SAVEPOINT sp")
conn.commit()

# A named cursor: DECLARE ... FETCH inside a transaction.
named = conn.cursor(name="py_big")
named.itersize = 2
named.execute("SELECT id, name FROM py_accounts ORDER BY id")
out["namedCursorRows"] = len([r for r in named])
named.close()
conn.commit()

cur.execute("SELECT sum(balance) FROM py_accounts")
out["sum"] = str(cur.fetchone()[0])
cur.execute("SELECT note FROM py_accounts WHERE name = %s", ("Ann",))
out["annNote"] = cur.fetchone()[0]
cur.execute("SELECT note FROM py_accounts WHERE name = %s", ("Bob",))
out["bobNote"] = cur.fetchone()[0]
conn.commit()

conn.autocommit = True
cur.execute("INSERT INTO py_accounts (name, balance) VALUES (%s, %s)", ("Eve", Decimal("0")))
cur.execute("SELECT count(*) FROM py_accounts")
out["count"] = cur.fetchone()[0]
conn.close()
print(json.dumps(out))
