-- A lookup that is also recorded, as kyso's is (R2): the read plus an event row, committed.
\set n random(1, 9999999999)
BEGIN;
SELECT ca, issued_at FROM kyso_issuances WHERE cccd = '046' || lpad(:n::text, 10, '0');
INSERT INTO kyso_events (kind, cccd, ca, body) VALUES ('LookupMade', '046' || lpad(:n::text, 10, '0'), 'VNPT-CA', '{}');
END;
