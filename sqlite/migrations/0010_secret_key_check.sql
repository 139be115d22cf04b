-- A value sealed with the secret key that encrypts secrets at rest,
-- written on the first start with a key: a start with another key (which
-- could open none of the stored secrets) is refused instead of failing
-- every delivery and login later.
CREATE TABLE secret_key_check (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    sealed TEXT NOT NULL
);
