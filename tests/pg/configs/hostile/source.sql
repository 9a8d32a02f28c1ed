-- tests/pg/configs/hostile/source.sql — a legacy source full of hostile data, for
-- tests/pg/hostile.sh. Load it into a SQL_ASCII database (like the real legacy one): bytes are
-- stored as given, whatever encoding they are (or are not) in. Raw bytes are written as
-- convert_from('\x..'::bytea, 'SQL_ASCII') so this file is plain ASCII and its meaning does not
-- depend on psql's client encoding.
--
-- Every hostile row has its own key and a comment saying where it must end up; hostile.sh
-- asserts those outcomes row by row. Keys 1..60 are plain rows around them.

-- people: no primary key (duplicated and NULL keys are possible), every value is text.
CREATE TABLE people (
    id bigint,
    name text DEFAULT 'Plain Name',
    title_az text DEFAULT 'Ad',
    title_en text,
    title_ru text,
    note text DEFAULT 'note',
    email text,
    born text DEFAULT '01/05/1990',
    score text DEFAULT '50',
    qty text DEFAULT '1',
    amount text DEFAULT '1.00',
    gender text DEFAULT '1',
    active text DEFAULT 't',
    extra text,
    password text DEFAULT 'cHc='          -- base64('pw')
);

INSERT INTO people (id, name, email, score, qty, gender, password)
SELECT g, 'Person ' || g, 'p' || g || '@example.org', (g % 101)::text, g::text, (g % 2 + 1)::text,
       encode(convert_to('pw' || g, 'SQL_ASCII'), 'base64')
FROM generate_series(1, 60) g;

-- Keys ---------------------------------------------------------------------------------------
INSERT INTO people (id, name) VALUES (NULL, 'No key A');                                   -- null_source_key
INSERT INTO people (id, name) VALUES (NULL, convert_from('\x4e6f6b6579fffe'::bytea, 'SQL_ASCII')); -- null_source_key (content withheld: the mapping has a sensitive column)
INSERT INTO people (id, name, active) VALUES (NULL, 'No key, inactive', 'x');             -- filtered (inactive)
INSERT INTO people (id, name) VALUES (100, 'Triplet'), (100, 'Triplet'), (100, 'Triplet'); -- 1 migrated, 2 duplicate_source_key
INSERT INTO people (id, name) VALUES (101, 'Dup B'), (101, 'Dup A');                      -- 'Dup A' migrates (row-text order), 1 duplicate
INSERT INTO people (id, name) VALUES (102, 'Good'),
    (102, convert_from('\x42616481'::bytea, 'SQL_ASCII'));  -- first in row-text order is 'Bad\x81': invalid_encoding; 'Good' duplicate_source_key
INSERT INTO people (id, name, note) VALUES (104, 'Big dup', repeat('b', 1048576)),
                                           (104, 'Big dup', repeat('a', 1048576));       -- the 'a' row migrates, 1 duplicate
INSERT INTO people (id, name) VALUES (-1, 'Minus One');                                    -- migrated
INSERT INTO people (id, name) VALUES (0, 'Zero');                                          -- migrated
INSERT INTO people (id, name) VALUES (-9223372036854775808, 'Int64 Min');                  -- migrated
INSERT INTO people (id, name) VALUES (9223372036854775807, 'Int64 Max');                   -- migrated
INSERT INTO people (id, active) VALUES (1130, 'x');                                        -- filtered (inactive)

-- Text: encodings ------------------------------------------------------------------------------
INSERT INTO people (id, name) VALUES
    (1001, convert_from('\x417964fd6e20defc6bfc72'::bytea, 'SQL_ASCII')),                 -- Windows-1254 'Aydin Sukur' -> recoded_text
    (1002, convert_from('\xc385c29ec383c2bc6bc383c2bc72'::bytea, 'SQL_ASCII')),           -- double-encoded UTF-8 -> recoded_text
    (1003, convert_from('\xc383e280a6c382c29ec383c692c382c2bc6bc383c692c382c2bc72'::bytea, 'SQL_ASCII')), -- triple-encoded
    (1004, convert_from('\x418142'::bytea, 'SQL_ASCII')),                                 -- 0x81: not Windows-1254 -> invalid_encoding, skipped
    (1005, convert_from('\xc68f6c6920417964fd6e'::bytea, 'SQL_ASCII')),                   -- UTF-8 'Ə' + 1254 byte: 0x8F undecodable -> skipped
    (1006, convert_from('\x4dc3bc6c6c657220fd'::bytea, 'SQL_ASCII')),                     -- UTF-8 'ü' + 1254 'ı': whole string read as 1254
    (1007, 'Ctl' || (SELECT string_agg(chr(c), '' ORDER BY c) FROM generate_series(1, 31) c) || chr(127) || 'X'); -- control_chars_removed -> 'CtlX'

-- Text: sizes, escapes, bytes the target refuses --------------------------------------------------
INSERT INTO people (id, note) VALUES (1008, repeat('x', 8388608));                         -- 8 MiB note, migrated whole
INSERT INTO people (id, note) VALUES (1009,
    repeat((SELECT string_agg(chr(c), '' ORDER BY c) FROM generate_series(1, 31) c) || chr(127) || E'\\"''', 30000)); -- ~1 MiB of controls, byte-exact
INSERT INTO people (id, name) VALUES (1010, repeat('N', 2097152));                         -- 2 MiB name: varchar(50) -> target_rejected 22001
INSERT INTO people (id, name) VALUES (1011, convert_from(decode(repeat('fd', 2097152), 'hex'), 'SQL_ASCII')); -- 2 MiB of 1254 -> 4 MiB UTF-8 -> 22001
INSERT INTO people (id, name) VALUES (1012, '   ');                                       -- required_value_missing, skipped
INSERT INTO people (id, name) VALUES (1013, NULL);                                        -- required_value_missing, skipped
INSERT INTO people (id, note) VALUES (1014, E'back\\slash\ttab\nnl\rcr"dq''sq \\N \\. end'); -- byte-exact
INSERT INTO people (id, note) VALUES (1015, E'\\N');                                        -- the two characters \N, not NULL
INSERT INTO people (id, note) VALUES (1016, convert_from('\x6f6bfffe656e64'::bytea, 'SQL_ASCII')); -- not UTF-8, no recode: target_rejected 22021
INSERT INTO people (id, note) VALUES (1017, E'\n\\.\n');                                    -- COPY's end-of-data marker as data

-- Dates (born: DD/MM/YYYY, DD.MM.YYYY, YYYY-MM-DD, years 1..9999, on_invalid null) ----------------
INSERT INTO people (id, born) VALUES
    (1020, '99/99/9999'),          -- invalid_date, NULL
    (1021, '29/02/1900'),          -- invalid_date (1900 is not a leap year)
    (1022, '29/02/2000'),          -- 2000-02-29
    (1023, '0000-00-00'),          -- invalid_date
    (1024, '31.12.99999'),         -- invalid_date
    (1025, '  01/01/2000  '),      -- 2000-01-01
    (1026, ''),                    -- NULL, no warning
    (1027, '2000-13-01'),          -- invalid_date
    (1028, '31/12/9999'),          -- 9999-12-31
    (1029, repeat('1', 1048576)),  -- invalid_date; the logged value is cut to 500 bytes
    (1030, '01/01/0001');          -- 0001-01-01

-- Numbers -------------------------------------------------------------------------------------------
INSERT INTO people (id, score) VALUES
    (1040, '1e999'),               -- gpa out_of_range (NULL); metadata number 1e999
    (1041, '-0'),                  -- gpa 0.00
    (1042, 'NaN'),                 -- gpa not_a_number; metadata not_a_number (string)
    (1043, '  12  '),              -- gpa 0.48; metadata not_a_number (string)
    (1044, '99999999999999999999999999999'), -- gpa out_of_range
    (1045, '75,5'),                -- gpa 3.02 (comma decimal)
    (1046, '1e200000'),            -- gpa out_of_range; the jsonb number overflows: target_rejected 22003
    (1047, 'Infinity'),            -- gpa not_a_number
    (1048, repeat('x', 2097152));  -- 2 MiB: gpa not_a_number; metadata not_a_number (the detail must stay bounded)
INSERT INTO people (id, qty) VALUES
    (1050, '9223372036854775807'), -- int64 max
    (1051, '9223372036854775808'), -- out_of_range, NULL
    (1052, '-9223372036854775808'),-- int64 min
    (1053, '-9223372036854775809'),-- out_of_range
    (1054, '  12  '),              -- 12
    (1055, '1e3'),                 -- not_an_integer
    (1056, '-0'),                  -- 0
    (1057, '00000000000000000000000000042'), -- 42
    (1058, repeat('9', 100000));   -- out_of_range
INSERT INTO people (id, amount) VALUES
    (1060, '-5'),                  -- CHECK (amount >= 0): target_rejected 23514
    (1061, '1e20'),                -- numeric(12,2) overflow: target_rejected 22003
    (1062, 'NaN'),                 -- not_a_number, NULL
    (1063, '12.345'),              -- 12.35
    (1064, '-0');                  -- 0.00

-- E-mail, map, passwords, booleans, JSON, i18n ----------------------------------------------------
INSERT INTO people (id, email) VALUES
    (1070, '  USER@EXAMPLE.COM '), -- USER@example.com
    (1071, 'dup@example.org'),     -- migrated
    (1072, 'dup@EXAMPLE.ORG'),     -- same address once normalised: target_rejected 23505 person_email_key
    (1073, 'not an email'),        -- invalid_email, NULL
    (1074, convert_from('\x61ff40782e6f7267'::bytea, 'SQL_ASCII')), -- invalid_email (not UTF-8), NULL
    (1075, 'a' || chr(1) || 'b@x.org');  -- invalid_email, NULL
INSERT INTO people (id, gender) VALUES
    (1080, 'X'),                   -- unmapped_value, NULL
    (1081, '2');                   -- female
INSERT INTO people (id, password) VALUES
    (1090, 'c2VjcmV0'),            -- base64('secret'): $2b$04$...
    (1091, '!!!notbase64'),        -- not_base64 -> '!reset-required'
    (1092, ''),                    -- empty_value -> '!reset-required'
    (1093, 'YQBi'),                -- base64('a\0b'): secret_has_nul -> '!reset-required'
    (1094, encode(convert_to(repeat('p', 100), 'SQL_ASCII'), 'base64')), -- secret_truncated warning, hashed
    (1095, NULL);                  -- required_value_missing -> '!reset-required'
INSERT INTO people (id, active) VALUES
    (1100, 'yes'),                 -- not_a_boolean, stored as the string "yes"
    (1101, 'f');                   -- false
INSERT INTO people (id, extra) VALUES
    (1110, '{"a": [1, 2, {"b": null}], "c": "' || convert_from('\xc59f'::bytea, 'SQL_ASCII') || '"}'), -- stored as JSON
    (1111, '[1, 2'),               -- not JSON: target_rejected 22P02
    (1112, '{"s": "\u0000"}'),     -- jsonb refuses \u0000: target_rejected 22P05
    (1113, NULL);                  -- field omitted
INSERT INTO people (id, title_az, title_en, title_ru) VALUES
    (1120, NULL, NULL, NULL),      -- placeholder 'Person 1120' in every language (placeholder_value)
    (1121, convert_from('\x417964fd6e'::bytea, 'SQL_ASCII'), NULL, ''), -- az recoded, en and ru from az
    (1122, NULL, 'Name', convert_from('\xd098d0bcd18f'::bytea, 'SQL_ASCII')), -- az from en
    (1123, convert_from('\x4181'::bytea, 'SQL_ASCII'), 'E', NULL), -- az invalid_encoding (NULL, warning): az and ru from en
    (1124, 'Ad', chr(1) || 'En' || chr(2), NULL);   -- en: control_chars_removed -> 'En'

-- notes: a child with a primary key; references by a bigint column and by a text column -------------
CREATE TABLE notes (id bigint PRIMARY KEY, person_id bigint, person_ref text, body text DEFAULT 'note');
INSERT INTO notes (id, person_id, person_ref) SELECT g, g - 99, (g - 98)::text FROM generate_series(100, 158) g;
INSERT INTO notes (id, person_id, person_ref) VALUES
    (1, 1, '2'),                                   -- migrated, both resolved
    (2, 999999, '1'),                              -- missing_reference, skipped
    (3, NULL, '1'),                                -- missing_reference (NULL), skipped
    (4, -1, '1'),                                  -- migrated (author -1)
    (5, -5, '1'),                                  -- missing_reference, skipped
    (6, 1010, '1'),                                -- parent_skipped (person 1010 rejected by the target)
    (7, 9223372036854775807, '-9223372036854775808'), -- migrated, int64 extremes both ways
    (8, 1, 'abc'),                                 -- migrated; editor NULL, warning missing_reference
    (9, 1, ' 12'),                                 -- same
    (10, 1, ''),                                   -- same
    (11, 1, '-1'),                                 -- editor -1
    (12, 1, '9223372036854775808'),                -- not a 64-bit key: warning, NULL
    (13, 1, '1e3'),                                -- warning, NULL
    (14, 1, NULL),                                 -- editor NULL
    (15, 1, '0'),                                  -- editor 0
    (16, 1, '1004'),                               -- editor's person skipped: warning parent_skipped, NULL
    (17, 1004, '1'),                               -- parent_skipped (invalid_encoding person)
    (18, 102, '1'),                                -- parent_skipped (person 102 never migrated)
    (19, 100, '101'),                              -- migrated (duplicated parents: first row)
    (20, 1, repeat('9', 2097152)),                 -- 2 MiB reference text: warning (the detail must stay bounded), NULL
    (-3, 1, '1'),                                  -- negative key, migrated
    (0, 1, '1'),                                   -- key 0, migrated
    (-9223372036854775808, 0, '0');                -- migrated
INSERT INTO notes (id, person_id, person_ref, body) VALUES
    (9223372036854775807, 2, '2', repeat('ab' || chr(1) || chr(9) || chr(27), 600000)); -- 3 MB: control_chars_removed, migrated

-- grades: composite key (student_id, course_id), no primary key ---------------------------------------
CREATE TABLE grades (student_id bigint, course_id bigint, points text, letter text DEFAULT 'A');
INSERT INTO grades (student_id, course_id, points) SELECT s, c, (s * 2 % 101)::text FROM generate_series(1, 40) s, generate_series(1, 3) c;
INSERT INTO grades VALUES
    (1, 1, '2', 'A'),                              -- identical to the generated (1,1): duplicate_source_key
    (1, 1, '10', 'F'),                             -- first of key (1,1) in row-text order: migrated (0.40, fail)
    (NULL, 1, '50', 'A'),                          -- null_source_key
    (1, NULL, '50', 'A'),                          -- null_source_key
    (NULL, NULL, '50', 'A'),                       -- null_source_key
    (-1, -1, '50', 'A'),                           -- migrated
    (0, 0, '50', 'A'),                             -- migrated
    (9223372036854775807, -9223372036854775808, '50', 'A'), -- migrated
    (-9223372036854775808, 9223372036854775807, '50', 'A'), -- migrated
    (999999, 1, '50', 'A'),                        -- missing_reference
    (1010, 1, '50', 'A'),                          -- parent_skipped
    (100, 2, '50', 'A'),                           -- migrated
    (2, 9, '1e999', 'A'),                          -- out_of_range, skipped (on_invalid skip)
    (3, 9, '50', 'Z'),                             -- map_default 'other'
    (4, 9, '-0', 'A'),                             -- 0.00
    (5, 9, '', 'A'),                               -- empty -> NULL -> NOT NULL: target_rejected 23502
    (NULL, 7, '50', convert_from('\xfffe'::bytea, 'SQL_ASCII')); -- null_source_key; the logged row shows \xFF\xFE

-- tags: placeholders (on_missing: stub) for owners given as text ---------------------------------------
CREATE TABLE tags (id bigint PRIMARY KEY, owner text, label text DEFAULT 'tag');
INSERT INTO tags (id, owner) VALUES
    (1, '1'),                                      -- resolved
    (2, '777777'),                                 -- placeholder person 777777 (parent_stubbed)
    (3, '777777'),                                 -- the same placeholder
    (4, '1010'),                                   -- person 1010 was rejected: placeholder
    (5, '-42'),                                    -- placeholder person -42
    (6, '-9223372036854775808'),                   -- resolved
    (7, '9223372036854775807'),                    -- resolved
    (8, NULL),                                     -- no owner at all
    (9, 'abc');                                    -- an owner that is not a key
INSERT INTO tags (id, owner, label) VALUES (10, '1', repeat('L', 1048576)), -- varchar(50): target_rejected 22001
                                           (11, '888888', repeat('M', 100)); -- placeholder 888888; the tag itself: target_rejected 22001

VACUUM ANALYZE;
