-- A read-only lookup by CCCD (the issue's reference rate: PostgreSQL does not record it).
\set n random(1, 9999999999)
SELECT ca, issued_at FROM kyso_issuances WHERE cccd = '046' || lpad(:n::text, 10, '0');
