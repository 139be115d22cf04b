-- The user list by status reads user_status instead of an index on
-- users(status): an index on a column that every status change updates
-- makes every write of a users row a new row version with new entries in
-- every index of the table, and the append's lookups of its users then
-- walk past the dead versions. Without it (and with room in each page),
-- a users row is updated in place (a HOT update). user_status changes
-- only when a user's status does.
CREATE TABLE user_status (
    app_id  text COLLATE "C" NOT NULL,
    status  int NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (app_id, status, user_id)
);
INSERT INTO user_status (app_id, status, user_id) SELECT app_id, status, user_id FROM users;
DROP INDEX users_status;
ALTER TABLE users SET (fillfactor = 70);
