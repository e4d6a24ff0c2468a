-- The PostgreSQL baseline: the same first-wins issuance as kyso (one row per citizen, the
-- second CA refused) plus an event row, in one synchronously committed transaction.
DROP TABLE IF EXISTS kyso_issuances, kyso_events;
CREATE TABLE kyso_issuances (
  cccd text PRIMARY KEY,
  ca text NOT NULL,
  issued_at timestamptz NOT NULL
);
CREATE TABLE kyso_events (
  seq bigserial PRIMARY KEY,
  kind text NOT NULL,
  cccd text NOT NULL,
  ca text NOT NULL,
  body jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
