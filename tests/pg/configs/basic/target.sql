CREATE TABLE person (id uuid PRIMARY KEY, name text NOT NULL, email text NOT NULL CONSTRAINT person_email_key UNIQUE,
                     born date, metadata jsonb NOT NULL);
CREATE TABLE note (id uuid PRIMARY KEY, person_id uuid NOT NULL CONSTRAINT note_person_id_fkey REFERENCES person(id), body text);
