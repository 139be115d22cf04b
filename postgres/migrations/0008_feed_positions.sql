-- Feed positions come from transaction ids (see postgres/feed.go): an
-- append takes no lock for them, and a reader returns only the events of
-- transactions that have ended. The per-app counter that handed them out
-- under a row lock held through each commit is dropped, so a replica of an
-- older version, which would still take positions from it (lower than the
-- new ones, so a cursor could skip them), fails to append instead: stop
-- the old replicas before starting this version's (docs/scaling.md).
-- Positions stored before stay as they are: all lower than the new ones.
DROP TABLE feeds;
