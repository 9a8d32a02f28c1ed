-- A small legacy source exercising the engine: duplicate keys (no primary key), NULL keys,
-- a filter, dirty dates, and a parent/child pair with dangling references.
CREATE TABLE people (id bigint, name text, email text, born text, active smallint);
INSERT INTO people
SELECT g, 'person ' || g,
       CASE WHEN g % 500 = 1 THEN 'dup@example.org' ELSE 'p' || g || '@example.org' END,
       CASE WHEN g % 100 = 7 THEN '31/02/2001' ELSE lpad((g % 28 + 1)::text, 2, '0') || '/05/1990' END,
       CASE WHEN g % 50 = 0 THEN 0 ELSE 1 END
FROM generate_series(1, 3000) g;
INSERT INTO people VALUES (10, 'person 10 again', 'again@example.org', '01/01/1990', 1);
INSERT INTO people VALUES (NULL, 'nobody', 'nobody@example.org', '01/01/1990', 1);
CREATE TABLE notes (id bigint PRIMARY KEY, person_id bigint, body text);
INSERT INTO notes SELECT g, CASE WHEN g % 97 = 0 THEN 999999 ELSE (g % 3000) + 1 END, 'note ' || g
FROM generate_series(1, 6000) g;
VACUUM ANALYZE;
