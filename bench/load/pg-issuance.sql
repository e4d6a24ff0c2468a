-- One issuance: first wins; the event says issued or refused. Random citizens (1e10 of
-- them), so nearly every one is new, as in the kyso run.
\set n random(1, 9999999999)
BEGIN;
WITH won AS (
  INSERT INTO kyso_issuances VALUES ('046' || lpad(:n::text, 10, '0'), 'VNPT-CA', now())
  ON CONFLICT DO NOTHING RETURNING cccd
)
INSERT INTO kyso_events (kind, cccd, ca, body)
SELECT CASE WHEN EXISTS (SELECT 1 FROM won) THEN 'CertificateIssued' ELSE 'IssuanceRefused' END,
       '046' || lpad(:n::text, 10, '0'), 'VNPT-CA',
       '{"channel":"app","segment":"adult_citizen","commune":"19819"}';
END;
