\set v random(1, 1000000000)
INSERT INTO bench_ins (v) VALUES (:v);
