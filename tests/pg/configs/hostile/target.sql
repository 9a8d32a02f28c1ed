-- tests/pg/configs/hostile/target.sql — the target of tests/pg/hostile.sh: a UTF-8 database
-- whose constraints some hostile rows violate (unique, check, not null, varchar length, jsonb,
-- numeric precision, foreign keys), so batches are bisected.
CREATE TABLE person (
    id uuid PRIMARY KEY,
    code text NOT NULL CONSTRAINT person_code_key UNIQUE,
    name varchar(50) NOT NULL CONSTRAINT person_name_check CHECK (name <> ''),
    title jsonb NOT NULL,
    note text,
    email text CONSTRAINT person_email_key UNIQUE,
    born date,
    gpa numeric(4,2) CONSTRAINT person_gpa_check CHECK (gpa BETWEEN 0 AND 4),
    qty bigint,
    amount numeric(12,2) CONSTRAINT person_amount_check CHECK (amount >= 0),
    gender text CONSTRAINT person_gender_check CHECK (gender IN ('male', 'female')),
    password_hash text NOT NULL,
    metadata jsonb NOT NULL
);
CREATE TABLE note (
    id uuid PRIMARY KEY,
    author_id uuid NOT NULL REFERENCES person(id),
    editor_id uuid REFERENCES person(id),
    body text NOT NULL,
    metadata jsonb NOT NULL
);
CREATE TABLE grade (
    id uuid PRIMARY KEY,
    person_id uuid NOT NULL REFERENCES person(id),
    points numeric(4,2) NOT NULL,
    letter text NOT NULL,
    metadata jsonb NOT NULL
);
CREATE TABLE tag (
    id uuid PRIMARY KEY,
    owner_id uuid REFERENCES person(id),
    label varchar(50) NOT NULL
);
